"""The vouchers PDF's rendering: an order's chunk of vouchers to HTML (Jinja, escaped) to PDF (xhtml2pdf).

CPU-bound and free of the database: services.pdf calls `render_vouchers` in a thread.
User text reaches the template only through Jinja's autoescape, and xhtml2pdf may read
nothing but the template and font folders (no network at all).
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import fontpkg
import reportlab
import segno
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from xhtml2pdf import pisa
from xhtml2pdf.config.resources import ResourceAccessPolicy

CHUNK_RENDER_SECONDS = 120  # a bound against a hang, not a budget: a chunk takes ~3 s
TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates" / "pdf"
FONTS = {
    # Latin, €, umlauts, ß: ReportLab's own Bitstream Vera. CJK: a subset of Noto Sans CJK SC
    # with TrueType outlines, vendored (templates/pdf/fonts/README.md). Arabic: Noto Sans Arabic
    # from its fontpkg package. xhtml2pdf picks per character the first family of the
    # font-family list that has the glyph.
    "sans": Path(reportlab.__file__).parent / "fonts" / "Vera.ttf",
    "sans_bold": Path(reportlab.__file__).parent / "fonts" / "VeraBd.ttf",
    "cjk": TEMPLATE_DIR / "fonts" / "NotoSansCJKsc-Regular.subset.ttf",
    "arabic": fontpkg.path("Noto Sans Arabic"),
}
LABELS: dict[str, dict[str, Any]] = json.loads((TEMPLATE_DIR / "labels.json").read_text(encoding="utf-8"))

_env = Environment(loader=FileSystemLoader(TEMPLATE_DIR), autoescape=True, undefined=StrictUndefined)
_POLICY = ResourceAccessPolicy.server(
    TEMPLATE_DIR,
    extra_roots=tuple(sorted({path.parent for path in FONTS.values()})),
    allow_remote=False,
    max_render_seconds=CHUNK_RENDER_SECONDS,
)
_fonts_lock = threading.Lock()
_fonts_ready = False


@dataclass(frozen=True)
class PdfOrder:
    number: str
    customer_name: str | None
    voucher_count: int
    locale: str


@dataclass(frozen=True)
class PdfLine:
    product_name: str
    validity_years: int
    fqdns: int
    wildcards: int


@dataclass(frozen=True)
class PdfVoucher:
    position: int
    code: str
    expires_at: datetime
    line: PdfLine


def _prepare_fonts() -> None:
    """Register the Arabic face with Latin line metrics before xhtml2pdf embeds it.

    Its own ascent (1.37 em) pushed any line holding an Arabic name half a line
    down; xhtml2pdf keeps a face registered under its name (`family_00`).
    """
    global _fonts_ready
    with _fonts_lock:
        if _fonts_ready:
            return
        arabic = TTFont("vs-arabic_00", str(FONTS["arabic"]))
        arabic.face.ascent, arabic.face.descent = 760, -240
        pdfmetrics.registerFont(arabic)
        _fonts_ready = True


def render_html(order: PdfOrder, vouchers: Iterable[PdfVoucher], *, public_url: str) -> str:
    """The chunk's HTML: every piece of user text escaped by the template engine."""
    t = LABELS.get(order.locale, LABELS["en"])
    redeem = f"{public_url.rstrip('/')}/redeem/"
    pages = []
    for v in vouchers:
        url = redeem + v.code
        years = t["year_one" if v.line.validity_years == 1 else "year_other"].format(n=v.line.validity_years)
        pages.append(
            {
                "position": v.position,
                "code": v.code,
                "url": url,
                # ASCII payload (URL and code): the smallest QR code, readable by every scanner.
                "qr": segno.make(url, error="m", micro=False).png_data_uri(scale=4, border=2),
                "expires": v.expires_at.strftime(t["date_format"]),
                "line": {**v.line.__dict__, "validity": years},
            }
        )
    return _env.get_template("vouchers.html").render(
        vouchers=pages,
        order=order.__dict__,
        t=t,
        locale=order.locale,
        fonts={name: str(path) for name, path in FONTS.items()},
    )


def render_vouchers(
    order: PdfOrder, vouchers: Iterable[PdfVoucher], *, public_url: str, policy: ResourceAccessPolicy = _POLICY
) -> bytes:
    """A PDF of these vouchers, one page each (CPU-bound: call it in a thread)."""
    _prepare_fonts()
    html = render_html(order, vouchers, public_url=public_url)
    out = io.BytesIO()
    result = pisa.CreatePDF(html, dest=out, path=str(TEMPLATE_DIR / "vouchers.html"), resource_policy=policy)
    if result.err:
        raise RuntimeError(f"xhtml2pdf reported {result.err} error(s)")
    return out.getvalue()
