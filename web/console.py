"""The partner console: a single-page app (console/) served at its routes, with a strict CSP.

Every route of the app answers the same page on a full load (the e-mails link to
them); the page's ES modules then talk only to the public GraphQL API. Paths that
are not the app's stay 404. Nothing inline: scripts and styles come from 'self'.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

ROOT = Path(__file__).resolve().parent.parent / "console"
PAGE = (ROOT / "index.html").read_text(encoding="utf-8")

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
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
    "X-Frame-Options": "DENY",
}
# The app's routes (console/app.js has the same table); the path parameters are only ever read by the page.
APP_PATHS = (
    "/",
    "/signin",
    "/signup",
    "/orders",
    "/orders/new",
    "/orders/{number:str}",
    "/finance/settings",
    "/finance/deposit",
    "/finance/ledger",
    "/account/users",
    "/account/api-keys",
    "/account/webhooks",
    "/staff/accounts",
    "/staff/jobs",
)


async def app_page(request: Request) -> Response:
    return HTMLResponse(PAGE, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


class _Assets(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        # Unhashed module names: the browser revalidates (ETag) so an upgrade is seen at once.
        response.headers.update({**SECURITY_HEADERS, "Cache-Control": "no-cache"})
        return response


routes: list[BaseRoute] = [
    *(Route(path, app_page, methods=["GET"]) for path in APP_PATHS),
    Mount("/console", app=_Assets(directory=ROOT), name="console-assets"),
]
