"""What operators poll: liveness, readiness and metrics (every process's, with `serve --workers N`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from infra import metrics
from services import health


async def healthz(request: Request) -> Response:
    return Response("ok", media_type="text/plain")


async def readyz(request: Request) -> Response:
    """Ready when the database answers with a connection to spare, Redis answers and live updates are subscribed."""
    resources = request.app.state.resources
    checks = await health.readiness(resources.redis, live_connected=resources.hub.connected.is_set())
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", **checks}, status_code=200 if ok else 503)


async def metrics_endpoint(request: Request) -> Response:
    resources = request.app.state.resources
    snapshot = await health.measure(resources.redis, resources.settings.queue_name)
    return Response(metrics.exposition(snapshot), media_type=metrics.CONTENT_TYPE)


routes = [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics_endpoint)]
