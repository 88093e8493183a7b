"""Every HTTP request counted by route and status, timed, and given a request id (the X-Request-Id header).

A plain ASGI middleware (no BaseHTTPMiddleware: its task per request costs a share of
a redemption). The route label is the matched route's template (`/redeem/{code:path}`),
never the path a client sent: paths carry codes and ids. A client's own request id is
kept when it is short and plain; any other is replaced by a new one.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infra import logs, metrics, tracing

REQUESTS = metrics.counter(
    "vouchsafe_http_requests_total",
    "HTTP requests by route template, method and status.",
    ["route", "method", "status"],
)
DURATION = metrics.histogram(
    "vouchsafe_http_request_duration_seconds", "HTTP request latency by route template.", ["route", "method"]
)
METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})
HEADER = b"x-request-id"
_SANE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
UNMATCHED = "unmatched"  # no route: 404s, whatever their path

# Children looked up once per label set: `.labels()` takes a lock and builds a tuple each time.
_counted: dict[tuple[str, str, int], Any] = {}
_timed: dict[tuple[str, str], Any] = {}


def request_id_of(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == HEADER:
            return value.decode("ascii") if _SANE_ID.fullmatch(value) else secrets.token_hex(8)
    return secrets.token_hex(8)


def record(route: str, method: str, status: int, seconds: float) -> None:
    method = method if method in METHODS else "OTHER"
    key = (route, method, status)
    counted = _counted.get(key)
    if counted is None:
        counted = _counted[key] = REQUESTS.labels(route, method, str(status))
    counted.inc()
    timed = _timed.get((route, method))
    if timed is None:
        timed = _timed[(route, method)] = DURATION.labels(route, method)
    timed.observe(seconds)


class Observe:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        tokens = (logs.REQUEST_ID.set(request_id), logs.OPERATION.set(None), logs.ACCOUNT_ID.set(None))
        if scope["type"] == "websocket":
            try:
                await self.app(scope, receive, send)
            finally:
                _reset(tokens)
            return
        status = 500  # unless a response starts: an exception that escaped every handler
        header = (HEADER, request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        started = time.perf_counter()
        try:
            if tracing.enabled:
                await self._traced(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            record(route, scope["method"], status, time.perf_counter() - started)
            _reset(tokens)

    async def _traced(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        with tracing.server_span(method, _header(scope, b"traceparent"), {"http.request.method": method}) as current:

            async def send_traced(message: Message) -> None:
                if message["type"] == "http.response.start":
                    current.set_attribute("http.response.status_code", message["status"])
                await send(message)

            try:
                await self.app(scope, receive, send_traced)
            finally:
                route = getattr(scope.get("route"), "path", None) or UNMATCHED
                tracing.rename(current, f"{method} {route}", {"http.route": route})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _reset(tokens: tuple[Any, Any, Any]) -> None:
    request_id, operation, account_id = tokens
    logs.REQUEST_ID.reset(request_id)
    logs.OPERATION.reset(operation)
    logs.ACCOUNT_ID.reset(account_id)
