"""POST/GET /graphql and the WebSocket: Strawberry's view, with the cached-answer front before it."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import cast

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET, UnsetType

from infra import response_cache
from schema import build_schema
from schema.context import AppResources, Context
from services.actors import Actor, authenticate
from settings import Settings

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
        # orjson: encoding a dashboard's large answer with json.dumps was a visible share of it (bench/README.md, W1).
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


def routes(settings: Settings) -> list[BaseRoute]:
    """/graphql over HTTP (through the cached-answer front) and over graphql-transport-ws."""
    view = VouchsafeGraphQL(
        build_schema(production=settings.production),
        graphql_ide=None if settings.production else "graphiql",
        allow_queries_via_get=False,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        allowed_origins=settings.allowed_origins,
        keep_alive=True,
        keep_alive_interval=KEEP_ALIVE_SECONDS,
        max_subscriptions_per_connection=MAX_SUBSCRIPTIONS_PER_CONNECTION,
    )
    return [Route("/graphql", CachedAnswers(view), methods=["GET", "POST"]), WebSocketRoute("/graphql", view)]
