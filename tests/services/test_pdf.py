"""The vouchers PDF: one page per voucher, escaped user text, every script, chunks run twice, failure."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import io
import logging
import threading
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest
import segno
from pypdf import PdfReader

from models import (
    OrderEventKind,
    OutboxMessage,
    OutboxStatus,
    PdfChunk,
    PdfPart,
    PdfRender,
    PdfStatus,
    VoucherOrder,
)
from services import outbox, pdf
from services.codes import CodeCipher
from services.events import KeptEvents
from settings import Settings
from tests.support.orders import (
    EV,
    OV,
    codes,
    drain,
    events,
    handlers,
    pages_text,
    partner,
    pending_rows,
    placed,
    placed_render_row,
    render,
    request_render,
    stored_pdf,
)
from tests.support.running import free_port


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two vouchers a chunk, so a five-voucher order takes three chunks."""
    monkeypatch.setattr(pdf, "CHUNK", 2)


class TestRender:
    async def test_one_page_per_voucher_with_its_code_link_and_details(
        self, db: None, settings: Settings, small_chunks: None
    ) -> None:
        # given
        actor = await partner(settings)
        order = await placed(settings, actor, OV, EV, customer_name="Acme Shop Ltd")
        # when
        data = await render(settings, order)
        # then
        assert data.startswith(b"%PDF-")
        revealed = await codes(settings, actor, order)
        pages = pages_text(data)
        assert len(pages) == order.voucher_count == 5
        for page, (i, r) in zip(pages, enumerate(revealed), strict=True):
            assert r.code in page
            assert f"{settings.public_url}/redeem/{r.code}" in page
            assert [other.code for other in revealed if other.code in page] == [r.code]
            assert order.number in page
            assert "Acme Shop Ltd" in page
            assert f"Voucher {i + 1} of 5" in page
            assert r.voucher.expires_at.strftime("%Y-%m-%d") in page
            assert "Terms of use" in page
        assert "Product Basic OV" in pages[0]
        assert "Product Basic EV" in pages[4]
        assert "Certificate validity 2 years Domain names (FQDNs) 3 Wildcard names 1" in pages[0]
        assert "Certificate validity 1 year Domain names (FQDNs) 1 Wildcard names 0" in pages[4]
        stored = await VoucherOrder.get(id=order.id)
        assert stored.pdf_status == PdfStatus.READY
        assert stored.pdf_generated_at is not None
        [ready] = await events(order, OrderEventKind.PDF_READY)
        assert ready.data == {"pages": 5, "bytes": len(data), "parts": 1}
        assert await PdfChunk.filter(order_id=order.id).count() == 0  # removed once joined

    @pytest.mark.parametrize(
        ("locale", "labels"),
        [
            ("de", ["Gutscheincode", "Einlösen unter", "Nutzungsbedingungen", "Gutschein 1 von 3", "2 Jahre"]),
            ("fr", ["Code du bon", "À utiliser sur", "Conditions d’utilisation", "Bon 1 sur 3", "2 ans"]),
        ],
    )
    async def test_in_the_accounts_locale(self, db: None, settings: Settings, locale: str, labels: list[str]) -> None:
        actor = await partner(settings, locale)
        order = await placed(settings, actor)
        [first, *_] = pages_text(await render(settings, order))
        for label in labels:
            assert label in first
        [r, *_] = await codes(settings, actor, order)
        assert r.voucher.expires_at.strftime("%d.%m.%Y" if locale == "de" else "%d/%m/%Y") in first

    async def test_the_qr_code_holds_the_redemption_url(self, db: None, settings: Settings) -> None:
        actor = await partner(settings)
        order = await placed(settings, actor, EV)
        data = await render(settings, order)
        revealed = await codes(settings, actor, order)
        for page, r in zip(PdfReader(io.BytesIO(data)).pages, revealed, strict=True):
            [image] = page.images
            expected = segno.make(f"{settings.public_url}/redeem/{r.code}", error="m", micro=False)
            assert qr_modules(image.image) == [[bool(m) for m in row] for row in expected.matrix]

    async def test_user_text_is_only_text_p01(self, db: None, settings: Settings) -> None:
        # given: a name that would fetch from a port of ours, then add a page
        with counting_server() as (port, hits):
            name = f'<img src="http://127.0.0.1:{port}/x"><pdf:nextpage/>B'
            actor = await partner(settings)
            order = await placed(settings, actor, OV, customer_name=name)
            # when
            data = await render(settings, order)
        # then
        pages = pages_text(data)
        assert len(pages) == order.voucher_count == 3
        for page in pages:
            assert name in page
        assert hits == []

    @pytest.mark.parametrize("name", ["Jürgen Größe €", "山田太郎", "محمد", "Jürgen Größe € 山田太郎 محمد"])
    async def test_every_script_comes_out_p02(
        self, db: None, settings: Settings, name: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        actor = await partner(settings)
        order = await placed(settings, actor, EV, customer_name=name)
        with caplog.at_level(logging.WARNING, logger="xhtml2pdf"):
            data = await render(settings, order)
        for page in pages_text(data):
            # Arabic is drawn joined (presentation forms); NFKC reads them as the letters typed.
            assert name in unicodedata.normalize("NFKC", page)
        assert not [r for r in caplog.records if r.name.startswith("xhtml2pdf")], caplog.text
        fonts = embedded_fonts(data)
        assert any("Vera" in f for f in fonts)
        assert any("NotoSansCJK" in f for f in fonts) == ("山" in name)
        assert any("Arabic" in f for f in fonts) == ("م" in name)

    async def test_the_longest_name_stays_on_one_page(self, db: None, settings: Settings) -> None:
        actor = await partner(settings)
        name = ("Wolfeschlegelsteinhausen " * 8)[:200]
        order = await placed(settings, actor, OV, customer_name=name)
        pages = pages_text(await render(settings, order))
        assert len(pages) == 3
        assert all(name.split()[0] in page for page in pages)

    @pytest.mark.parametrize("locale", ["en", "de", "fr"])
    async def test_the_partners_notes_are_never_on_the_customers_pdf(
        self, db: None, settings: Settings, locale: str
    ) -> None:
        # given: notes only the partner should read, beside a customer name that is printed
        actor = await partner(settings, locale=locale)
        notes = "Invoice 2026-0042, margin 31%"
        order = await placed(settings, actor, EV, customer_name="Acme Shop Ltd", notes=notes)
        # when
        pages = pages_text(await render(settings, order))
        # then: the name on every page, the notes and their label on none
        labels = {"en": "Reference", "de": "Referenz", "fr": "Référence"}
        assert len(pages) == 2
        for page in pages:
            assert "Acme Shop Ltd" in page
            assert "2026-0042" not in page
            assert "margin" not in page
            assert labels[locale] not in page


class TestRunTwice:
    async def test_every_step_twice_and_at_once_gives_one_pdf(
        self, db: None, settings: Settings, small_chunks: None
    ) -> None:
        # given
        actor = await partner(settings)
        order = await placed(settings, actor, OV, EV)
        run = handlers(settings)
        message_id = await placed_render_row(order)
        payload = {"order_id": order.id}
        # when: render_pdf delivered three times, two of them at once
        await asyncio.gather(run[pdf.RENDER_PDF](payload, message_id), run[pdf.RENDER_PDF](payload, message_id))
        await run[pdf.RENDER_PDF](payload, message_id)
        chunk_rows = await pending_rows(order, pdf.RENDER_PDF_CHUNK)
        assert [row["payload"]["chunk"] for row in chunk_rows] == [0, 1, 2]
        # and every chunk twice at once, then once more
        for row in chunk_rows:
            twice = [run[pdf.RENDER_PDF_CHUNK](row["payload"], row["id"]) for _ in range(2)]
            await asyncio.gather(*twice)
            await run[pdf.RENDER_PDF_CHUNK](row["payload"], row["id"])
        assert await PdfChunk.filter(order_id=order.id).count() == 3
        [assembly] = await pending_rows(order, pdf.ASSEMBLE_PDF)
        # and the assembly twice at once, then once more
        await asyncio.gather(*[run[pdf.ASSEMBLE_PDF](assembly["payload"], assembly["id"]) for _ in range(2)])
        await run[pdf.ASSEMBLE_PDF](assembly["payload"], assembly["id"])
        await run[pdf.RENDER_PDF](payload, message_id)
        await run[pdf.RENDER_PDF](payload, message_id + 1_000_000)  # even a new request: READY stays
        # then
        data = await stored_pdf(order, settings)
        assert len(PdfReader(io.BytesIO(data)).pages) == 5
        assert await PdfPart.filter(order_id=order.id).count() == 1
        assert len(await events(order, OrderEventKind.PDF_READY)) == 1
        assert await pending_rows(order, pdf.RENDER_PDF_CHUNK, pdf.ASSEMBLE_PDF) == [*chunk_rows, assembly]

    async def test_a_restart_leaves_the_older_chunks_behind(
        self, db: None, settings: Settings, small_chunks: None
    ) -> None:
        actor = await partner(settings)
        order = await placed(settings, actor, OV, EV)
        run = handlers(settings)
        await run[pdf.RENDER_PDF]({"order_id": order.id}, await placed_render_row(order))
        [stale, *_] = await pending_rows(order, pdf.RENDER_PDF_CHUNK)
        await run[pdf.RENDER_PDF_CHUNK](stale["payload"], stale["id"])
        # when: a second request restarts the render before the first finishes
        await request_render(order)
        await drain(order, run)
        # then
        assert (await PdfRender.get(order_id=order.id)).generation == 2
        assert len(PdfReader(io.BytesIO(await stored_pdf(order, settings))).pages) == 5
        assert len(await events(order, OrderEventKind.PDF_READY)) == 1

    async def test_large_files_are_stored_in_parts(
        self, db: None, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(pdf, "PART_BYTES", 20_000)
        actor = await partner(settings)
        order = await placed(settings, actor, EV)
        data = await render(settings, order)
        parts = await PdfPart.filter(order_id=order.id).order_by("part").values_list("part", flat=True)
        assert list(parts) == list(range(-(-len(data) // 20_000)))
        assert len(parts) > 1
        assert len(PdfReader(io.BytesIO(data)).pages) == 2


# On the embedded run, the in-process workers of other tests' apps take pending render jobs
# from the shared database and race this test's hand-driven failure; it runs on PostgreSQL.
@pytest.mark.postgres
class TestFailure:
    async def test_a_failing_render_ends_failed_and_visible_then_a_retry_succeeds(
        self, db: None, settings: Settings
    ) -> None:
        # given: a worker whose code key is not the one that sealed the codes
        actor = await partner(settings)
        order = await placed(settings, actor, EV)
        # when
        await drain(order, handlers(settings, CodeCipher(b"another key" * 3)))
        # then
        failed = await VoucherOrder.get(id=order.id)
        assert failed.pdf_status == PdfStatus.FAILED
        assert failed.pdf_error is not None
        assert failed.pdf_error.startswith("Rendering vouchers 1+ failed: InvalidTag")
        [event] = await events(order, OrderEventKind.PDF_FAILED)
        assert event.data == {"reason": failed.pdf_error}
        # this order's row: the shared database may hold other tests' failed rows
        failed_rows = await OutboxMessage.filter(task=pdf.RENDER_PDF_CHUNK, status=OutboxStatus.FAILED).values(
            "id", "payload"
        )
        [row] = [r for r in failed_rows if r["payload"]["order_id"] == order.id]
        # and when: an operator retries the row, with the right key
        await outbox.retry_failed(row["id"])
        await drain(order, handlers(settings))
        # then
        ready = await VoucherOrder.get(id=order.id)
        assert (ready.pdf_status, ready.pdf_error) == (PdfStatus.READY, None)
        assert len(PdfReader(io.BytesIO(await stored_pdf(order, settings))).pages) == 2
        assert len(await events(order, OrderEventKind.PDF_READY)) == 1

    async def test_a_new_render_after_a_failure_starts_over(self, db: None, settings: Settings) -> None:
        actor = await partner(settings)
        order = await placed(settings, actor, EV)
        await drain(order, handlers(settings, CodeCipher(b"another key" * 3)))
        assert (await VoucherOrder.get(id=order.id)).pdf_status == PdfStatus.FAILED
        await request_render(order)
        data = await render(settings, order)
        assert len(PdfReader(io.BytesIO(data)).pages) == 2
        assert (await VoucherOrder.get(id=order.id)).pdf_status == PdfStatus.READY

    async def test_a_failure_hook_never_undoes_ready(self, db: None, settings: Settings) -> None:
        actor = await partner(settings)
        order = await placed(settings, actor, EV)
        await render(settings, order)
        generation = (await PdfRender.get(order_id=order.id)).generation
        hook = pdf.pdf_failure_hooks(bus=KeptEvents())[pdf.ASSEMBLE_PDF]
        await hook({"order_id": order.id, "generation": generation}, "RuntimeError: late")
        assert (await VoucherOrder.get(id=order.id)).pdf_status == PdfStatus.READY
        assert await events(order, OrderEventKind.PDF_FAILED) == []


def qr_modules(image: Any) -> list[list[bool]]:
    """The dark modules of the QR code as drawn (4 pixels a module, a border of 2)."""
    gray = image.convert("L")
    size = gray.width // 4 - 4
    return [[gray.getpixel((4 * (2 + x) + 2, 4 * (2 + y) + 2)) < 128 for x in range(size)] for y in range(size)]


def embedded_fonts(data: bytes) -> set[str]:
    fonts: set[str] = set()
    for page in PdfReader(io.BytesIO(data)).pages:
        for font in page["/Resources"]["/Font"].values():
            fonts.add(str(font.get_object()["/BaseFont"]))
    return fonts


@contextlib.contextmanager
def counting_server() -> Iterator[tuple[int, list[str]]]:
    """An HTTP server on a free loopback port that records every request it gets."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port, hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
