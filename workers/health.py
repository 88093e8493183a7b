"""`vouchsafe worker`'s own HTTP endpoint (VOUCHSAFE_WORKER_METRICS_PORT): /healthz, /readyz and /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from infra import metrics
from services import health

log = logging.getLogger(__name__)

STOP_SECONDS = 5.0


def app(redis: Any, queue_name: str) -> Starlette:
    async def healthz(request: Request) -> Response:
        return Response("ok", media_type="text/plain")

    async def readyz(request: Request) -> Response:
        checks = await health.readiness(redis)
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", **checks}, status_code=200 if ok else 503)

    async def metrics_endpoint(request: Request) -> Response:
        snapshot = await health.measure(redis, queue_name)
        return Response(metrics.exposition(snapshot), media_type=metrics.CONTENT_TYPE)

    return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics_endpoint)])


class _Server(uvicorn.Server):
    """uvicorn inside arq's loop: the worker keeps its own signal handling (SIGTERM ends it, then this)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Endpoint:
    def __init__(self, redis: Any, queue_name: str, *, host: str, port: int) -> None:
        config = uvicorn.Config(
            app(redis, queue_name), host=host, port=port, log_config=None, access_log=False, lifespan="off"
        )
        self.server = _Server(config)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._serve())

    async def _serve(self) -> None:
        try:
            await self.server.serve()
        except SystemExit:  # uvicorn's answer to a port in use: the worker runs on without its endpoint
            log.error("worker endpoint not started (is the port in use?)")

    async def stop(self) -> None:
        if self.task is None:
            return
        self.server.should_exit = True
        try:
            await asyncio.wait_for(self.task, timeout=STOP_SECONDS)
        except (TimeoutError, Exception) as exc:  # never holds the worker's exit up
            log.warning("worker endpoint did not stop cleanly: %s", exc)
