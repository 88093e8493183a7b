"""The redemption page, `GET /redeem/<code>`: one self-contained page that talks to /graphql.

A code is a bearer secret, so it lives only in the address bar and the page's memory:
the server never writes it into the HTML (the page reads `location.pathname`), the
page never puts it into another URL, no Referer carries it away, and the access log
shows `/redeem/VS-…` instead (`install_access_log_masking`).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from services.trusted_documents import document_hash

TEMPLATE = (Path(__file__).resolve().parent.parent / "templates" / "redeem" / "index.html").read_text(encoding="utf-8")
NONCE_SLOT = "{{nonce}}"
IDS_SLOT = "{{document_ids}}"

_JS_STRING = r'"(?:[^"\\\n]|\\.)*"'
_JS_TERM = rf"(?:{_JS_STRING}|[A-Z][A-Z0-9_]*)"
# `var NAME = "..." + OTHER + "...";`: how the page's script writes its documents.
_JS_VAR = re.compile(rf"\bvar ([A-Z][A-Z0-9_]*) = ({_JS_TERM}(?:\s*\+\s*{_JS_TERM})*);")
_OPERATION = re.compile(r"\s*(query|mutation|subscription)\b")


def redeem_page_documents(html: str) -> list[str]:
    """The page's documents, as its script builds them (string constants joined with +)."""
    values: dict[str, str] = {}
    for name, expression in _JS_VAR.findall(html):
        parts = re.findall(_JS_TERM, expression)
        try:
            values[name] = "".join(json.loads(p) if p.startswith('"') else values[p] for p in parts)
        except KeyError:
            continue  # built from something other than string constants: not a document
    return [text for text in values.values() if _OPERATION.match(text)]


PAGE_DOCUMENTS = redeem_page_documents(TEMPLATE)
# text -> trusted-document id, written into the page: it sends ids without hashing (no crypto.subtle over http).
_IDS = json.dumps({text: f"sha256:{document_hash(text)}" for text in PAGE_DOCUMENTS}).replace("<", "\\u003c")
PAGE = TEMPLATE.replace(IDS_SLOT, _IDS)

# Loggers that write request paths: uvicorn's access log, and its error log for WebSocket handshakes.
PATH_LOGGERS = ("uvicorn.access", "uvicorn.error")

MASKED_CODE = "VS-…"
_REDEEM_PATH = re.compile(r"/redeem/[^\s?#\"']*", re.IGNORECASE)
_QUERY_TOKEN = re.compile(r"([?&;]t=)[^&;#\s\"']*")
# A code wherever else it shows up (a refused GET /graphql?query=..., a mistyped path), in any
# spelling the API accepts: groups of five, separated by dashes, spaces (also URL-encoded) or nothing.
# Bearer secrets by their prefixes: sessions (vss_), API keys (vsk_), webhook signing secrets (whsec_).
_TOKEN = re.compile(r"\b(vss_|vsk_|whsec_)[A-Za-z0-9_\-+/=]+")
_CODE = re.compile(r"(?<![0-9a-z])vs(?:[-\s+]|%20)*(?:[0-9a-z]{5}(?:[-\s+]|%20)*){3}[0-9a-z]{5}", re.IGNORECASE)


def content_security_policy(nonce: str) -> str:
    """Nothing but the page's own inline blocks, and fetch to its own origin."""
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'nonce-{nonce}'",
            f"style-src 'nonce-{nonce}'",
            "connect-src 'self'",
            "img-src 'self' data:",
            "form-action 'none'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ]
    )


async def redeem_page(request: Request) -> Response:
    """The same page for every code; the page itself asks the API about the code."""
    nonce = secrets.token_urlsafe(18)
    headers = {
        "Content-Security-Policy": content_security_policy(nonce),
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    return HTMLResponse(PAGE.replace(NONCE_SLOT, nonce), headers=headers)


routes = [Route("/redeem/{code:path}", redeem_page, methods=["GET"])]


def mask_secrets(text: str) -> str:
    """The text with redemption paths, voucher codes, download tokens (`t=`), sessions, keys and secrets masked."""
    # Every access log line comes here: one holding none of the patterns' fixed parts skips the four scans.
    # casefold, not lower: the patterns ignore case as `re` does (`ſ` is an `s` to it).
    folded = text.casefold()
    if "vs" not in folded and "/redeem/" not in folded and "t=" not in text and "whsec_" not in text:
        return text
    return _masked(text)


def _masked(text: str) -> str:
    text = _REDEEM_PATH.sub("/redeem/" + MASKED_CODE, text)
    text = _QUERY_TOKEN.sub(r"\1…", text)
    text = _TOKEN.sub(r"\1…", text)
    return _CODE.sub(MASKED_CODE, text)


class MaskSecretsFilter(logging.Filter):
    """Masks codes and download tokens in a record's message and its args before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask_secrets(record.msg)
        args = record.args
        # uvicorn's AccessFormatter unpacks the args tuple by position: keep its shape.
        if isinstance(args, tuple):
            record.args = tuple(mask_secrets(a) if isinstance(a, str) else a for a in args)
        elif isinstance(args, Mapping):
            record.args = {k: mask_secrets(v) if isinstance(v, str) else v for k, v in args.items()}
        return True


def install_access_log_masking() -> None:
    """Add the masking filter to every logger that writes request paths; a second call changes nothing.

    Filters sit on the loggers, not their handlers, so they survive the dictConfig that
    `uvicorn.run` applies afterwards (it replaces handlers and keeps logger filters).
    """
    for name in PATH_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, MaskSecretsFilter) for f in logger.filters):
            logger.addFilter(MaskSecretsFilter())
