"""GraphiQL (development only): the page and its assets, all from vouchsafe itself, under a strict CSP.

The assets are vendored from npm (web/static/graphiql/README.md): GraphiQL works
offline and in networks that block CDNs, and the Content-Security-Policy lets the
page load and connect to nothing but its own origin.
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

ASSETS = Path(__file__).resolve().parent / "static" / "graphiql"
PAGE = (ASSETS / "index.html").read_text(encoding="utf-8")

# GraphiQL's components set style attributes at run time: styles may be inline, scripts never.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def page_response() -> Response:
    return HTMLResponse(PAGE, headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})


class _Assets(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update({**SECURITY_HEADERS, "Cache-Control": "public, max-age=3600"})
        return response


routes: list[BaseRoute] = [Mount("/graphiql/assets", app=_Assets(directory=ASSETS), name="graphiql-assets")]
