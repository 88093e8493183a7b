"""The Starlette application: /graphql (HTTP + graphql-transport-ws), downloads, health, metrics.

The composition root: it builds the process's resources in the lifespan and
hands them to the GraphQL context; nothing below it reads the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET, UnsetType
from tortoise import connections

import redeem_page
from models import PdfStatus
from schema import build_schema
from schema.context import AppResources, Context
from services import database, downloads, events, exports, metrics, payments, pdf_store, response_cache
from services.actors import Actor, authenticate
from services.codes import CodeCipher
from services.live import Hub
from services.ratelimit import RateLimiter
from settings import Settings, load_settings
from workers.connections import ArqQueue, open_redis
from workers.relay import relay_forever

log = logging.getLogger("vouchsafe.server")

# Every in-flight operation of one WebSocket counts (Strawberry's cap): a dashboard follows
# a handful of orders; more than this from one connection is a client bug or an attack.
MAX_SUBSCRIPTIONS_PER_CONNECTION = 20
KEEP_ALIVE_SECONDS = 15
ACK = cast(UnsetType, UNSET)  # connection_ack without a payload


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


# Set by CachedAnswers on the ASGI scope of a POST it hands on to GraphQL: who the token
# stands for and the response cache's lookup, so neither is done twice.
PREFETCHED = "vouchsafe.prefetched"


@dataclass(frozen=True)
class Prefetched:
    actor: Actor | None
    lookup: response_cache.Lookup | None


class VouchsafeGraphQL(GraphQL[Context, None]):
    def encode_json(self, data: object) -> str:
        # A dashboard answer is ~250 kB: json.dumps took ~2 ms of it, orjson a tenth of that.
        # Text, not bytes: WebSocket messages of graphql-transport-ws are text frames.
        return orjson.dumps(data).decode()

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        resources: AppResources = request.app.state.resources
        token = bearer_token(request.headers.get("authorization"))
        prefetched: Prefetched | None = request.scope.get(PREFETCHED)
        if prefetched is None:
            prefetched = Prefetched(await authenticate(token) if token else None, None)
        request_id = uuid.uuid4().hex[:16]
        if isinstance(response, Response):
            response.headers["X-Request-Id"] = request_id
        return Context(
            resources=resources,
            actor=prefetched.actor,
            client=request.client.host if request.client else "unknown",
            request_id=request_id,
            request=request,
            token=token,
            cache_lookup=prefetched.lookup,
        )

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """graphql-transport-ws `connection_init`: a browser cannot set headers, so the token comes here.

        `{"authorization": "Bearer vss_..."}` (or `{"token": "vss_..."}`); an unknown,
        expired or revoked token closes the connection with 4403.
        """
        params = context.connection_params or {}
        raw = params.get("authorization") or params.get("Authorization")
        token = bearer_token(raw) if isinstance(raw, str) else None
        if token is None and isinstance(params.get("token"), str):
            token = params["token"].strip() or None
        if token is None:
            if context.actor is None:
                raise ConnectionRejectionError()
            return ACK  # a non-browser client that sent the Authorization header on the upgrade
        actor = await authenticate(token)
        if actor is None:
            raise ConnectionRejectionError()
        context.actor, context.token = actor, token
        return ACK


class CachedAnswers:
    """POST /graphql: a dashboard's repeated read of unchanged data, answered before any GraphQL work.

    A polled answer costs its stored bytes: no parsing, validation, execution or JSON
    encoding. Only an answer the ResponseCache extension stored is ever sent, and it
    stored only cacheable reads without errors, under the exact document, variables,
    principal, role and tenant version; the session is checked on every request
    (revocation holds at once). Everything else goes on to GraphQL unchanged.
    """

    def __init__(self, graphql: VouchsafeGraphQL) -> None:
        self.graphql = graphql

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.graphql(scope, receive, send)
            return
        request = Request(scope, receive)
        body = await request.body()
        answer = await self._answer(request, body)
        if answer is not None:
            await answer(scope, receive, send)
            return

        async def replay() -> Message:  # GraphQL reads the body this read already
            return {"type": "http.request", "body": body, "more_body": False}

        await self.graphql(scope, replay, send)

    async def _answer(self, request: Request, body: bytes) -> Response | None:
        token = bearer_token(request.headers.get("authorization"))
        if token is None or not request.headers.get("content-type", "").startswith("application/json"):
            return None
        try:
            payload = json.loads(body)
        except ValueError:
            return None
        query = payload.get("query") if isinstance(payload, dict) else None
        if not isinstance(query, str):
            return None
        actor = await authenticate(token)
        request.scope[PREFETCHED] = Prefetched(actor, None)
        # A write is never answered from the cache: skip the lookup (a miss would be harmless).
        if actor is None or query.lstrip().startswith(("mutation", "subscription")):
            return None
        resources: AppResources = request.app.state.resources
        key = [query, payload.get("variables") or {}, payload.get("operationName")]
        lookup = await response_cache.look_up(resources.redis, resources.settings.queue_name, actor, key)
        request.scope[PREFETCHED] = Prefetched(actor, lookup)
        if lookup is None or lookup.stored is None:
            return None
        return Response(
            b'{"data":' + lookup.stored + b"}",
            media_type="application/json",
            headers={"X-Request-Id": uuid.uuid4().hex[:16]},
        )


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    """Ready when the database and Redis answer."""
    checks: dict[str, str] = {}
    try:
        await connections.get("default").execute_query("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        await request.app.state.resources.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", **checks}, status_code=200 if ok else 503)


def not_found() -> Response:
    # One answer for every refusal (the status and body of an unknown path): tokens and ids cannot be probed.
    return PlainTextResponse("Not Found", status_code=404, headers={"Cache-Control": "no-store"})


async def download_codes_csv(request: Request) -> Response:
    """All codes of an order as CSV, streamed, for a signed URL minted by the API."""
    resources: AppResources = request.app.state.resources
    grant = downloads.verify(
        secret=resources.settings.secret_key,
        token=request.query_params.get("t", ""),
        order_id=request.path_params["order_id"],
        kind="csv",
    )
    order = await downloads.authorize(grant) if grant else None
    if grant is None or order is None:
        return not_found()
    headers = {
        "Content-Disposition": f'attachment; filename="{order.number}.csv"',
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }
    media_type = "text/csv; charset=utf-8"
    if request.method == "HEAD":  # Starlette routes HEAD here too: no codes leave, so nothing is recorded
        return Response(media_type=media_type, headers=headers)
    await exports.record_download(order_id=order.id, grant=grant, kind="csv")
    chunks = exports.csv_chunks(order=order, cipher=resources.cipher, public_url=resources.settings.public_url)
    return StreamingResponse(chunks, media_type=media_type, headers=headers)


async def download_vouchers_pdf(request: Request) -> Response:
    """The order's vouchers PDF once it is READY, streamed from the database, for a signed URL minted by the API."""
    resources: AppResources = request.app.state.resources
    grant = downloads.verify(
        secret=resources.settings.secret_key,
        token=request.query_params.get("t", ""),
        order_id=request.path_params["order_id"],
        kind="pdf",
    )
    order = await downloads.authorize(grant) if grant else None
    if grant is None or order is None or order.pdf_status != PdfStatus.READY:
        return not_found()
    headers = {
        "Content-Disposition": f'attachment; filename="{order.number}.pdf"',
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }
    if request.method == "HEAD":  # as for the CSV: no codes leave, so nothing is recorded
        return Response(media_type="application/pdf", headers=headers)
    await exports.record_download(order_id=order.id, grant=grant, kind="pdf")
    return StreamingResponse(pdf_store.pdf_bytes_stream(order.id), media_type="application/pdf", headers=headers)


async def metrics_endpoint(request: Request) -> Response:
    text = await metrics.render(request.app.state.resources.hub)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or load_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings.uses_sqlite:
            await database.migrate(settings.database_url)
        await database.open_db(settings.database_url, pool_size=settings.db_pool_size)
        redis = await open_redis(settings.redis_url, queue_name=settings.queue_name)
        bus = events.RedisEventBus(redis, settings.queue_name)
        events.install(bus)
        hub = Hub(redis, bus.channel)
        app.state.resources = AppResources(
            settings=settings,
            redis=redis,
            limiter=RateLimiter(redis, namespace=settings.queue_name),
            gateway=payments.gateway_for(settings.payment_gateway),
            cipher=CodeCipher(settings.code_key),
            hub=hub,
        )
        background: list[asyncio.Task[Any]] = [
            asyncio.create_task(relay_forever(ArqQueue(redis), interval=settings.outbox_sweep_seconds)),
            asyncio.create_task(hub.run()),
        ]
        worker = worker_task = None
        if settings.embedded_redis:
            # Imported here: the worker loads the PDF toolkit, which API instances on Redis never need.
            from workers.worker import embedded_worker

            worker = embedded_worker(settings, redis)
            worker_task = asyncio.create_task(worker.main())
        log.info(
            "vouchsafe ready: database=%s redis=%s worker=%s",
            "sqlite" if settings.uses_sqlite else "postgres",
            "in-process" if settings.embedded_redis else "redis",
            "in-process" if worker else "separate",
        )
        # What start-up built (the schema, modules, pools) lives as long as the process: out
        # of the collector's sight, a full collection scans only what requests made since.
        # Without this, each full collection stalled every request in flight for ~50 ms
        # (gc.callbacks timing under bench W3; its HTTP p99 went from 107 to 80 ms).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            if worker is not None and worker_task is not None:
                await worker.finish(worker_task)
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            events.uninstall(bus)
            await redis.aclose()
            await database.close_db()

    graphql = VouchsafeGraphQL(
        build_schema(production=settings.production),
        graphql_ide=None if settings.production else "graphiql",
        allow_queries_via_get=False,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        allowed_origins=settings.allowed_origins,
        keep_alive=True,
        keep_alive_interval=KEEP_ALIVE_SECONDS,
        max_subscriptions_per_connection=MAX_SUBSCRIPTIONS_PER_CONNECTION,
    )
    middleware = []
    if settings.allowed_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.allowed_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"],
            )
        )
    return Starlette(
        routes=[
            Route("/graphql", CachedAnswers(graphql), methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/downloads/orders/{order_id:int}/codes.csv", download_codes_csv, methods=["GET"]),
            Route("/downloads/orders/{order_id:int}/vouchers.pdf", download_vouchers_pdf, methods=["GET"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
            *redeem_page.routes,
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
