"""POST/GET /graphql and the WebSocket: Strawberry's view, with the cached-answer front before it."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, cast

import orjson
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.exceptions import ConnectionRejectionError, MissingQueryError
from strawberry.http import process_result
from strawberry.http.exceptions import NonJsonMessageReceived, NonTextMessageReceived
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.subscriptions.protocols.graphql_transport_ws.types import Message, SubscribeMessage
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UNSET, UnsetType

from infra import logs, response_cache
from infra.faults import RETRY_AFTER_SECONDS, describe, is_unavailable
from schema import Schema, build_schema
from schema.context import AppResources, Context
from schema.errors import UNAVAILABLE_MESSAGE
from schema.prepared import execute_prepared
from services.actors import Actor, authenticate
from settings import Settings
from web import graphiql
from web.documents import DocumentStore, Resolved
from web.graphql_http import (
    CONTENT_TYPES,
    GRAPHQL_RESPONSE_JSON,
    JSON,
    GraphQLParams,
    HTTPRefusal,
    check_content_type,
    params_from_payload,
    params_from_url,
    parse_params,
    read_body,
    refusal_response,
    response_media_type,
)

log = logging.getLogger("vouchsafe.graphql")

# Every in-flight operation of one WebSocket counts (Strawberry's cap): a dashboard follows
# a handful of orders; more than this from one connection is a client bug or an attack.
MAX_SUBSCRIPTIONS_PER_CONNECTION = 20
KEEP_ALIVE_SECONDS = 15
ACK = cast(UnsetType, UNSET)  # connection_ack without a payload
# Subscriptions are refused over HTTP (they need the WebSocket), before anything runs.
HTTP_OPERATIONS = frozenset({OperationType.QUERY, OperationType.MUTATION})
GET_OPERATIONS = frozenset({OperationType.QUERY})
GET_MUTATION_REFUSED = "Mutations are sent with POST; GET runs stored queries only."
SUBSCRIPTION_OVER_HTTP = (
    "Subscriptions run over the WebSocket: connect to /graphql with the graphql-transport-ws protocol."
)
GET_REFUSED = "Send GraphQL operations with POST (Content-Type: application/json); GET runs none."
METHOD_REFUSED = "GraphQL operations are sent with POST."
NOT_ACCEPTABLE = "Accept application/graphql-response+json or application/json: no other response type is offered."
MESSAGE_TOO_BIG = 1009  # WebSocket close code: a message larger than the endpoint takes


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


# Set by GraphQLOverHTTP on the ASGI scope of a POST it executes: who the token
# stands for and the response cache's lookup, so neither is done twice.
PREFETCHED = "vouchsafe.prefetched"


@dataclass(frozen=True)
class Prefetched:
    actor: Actor | None
    lookup: response_cache.Lookup | None


class LimitedWebSocketAdapter(ASGIWebSocketAdapter):
    """graphql-transport-ws messages over the body limit close the connection (1009) unread."""

    async def iter_json(self, *, ignore_parsing_errors: bool = False) -> AsyncGenerator[object, None]:
        limit = cast(VouchsafeGraphQL, self.view).max_message_bytes
        try:
            while self.ws.application_state != WebSocketState.DISCONNECTED:
                text = await self.ws.receive_text()
                if len(text) > limit // 4 and len(text.encode()) > limit:
                    await self.ws.close(code=MESSAGE_TOO_BIG, reason=f"Messages are limited to {limit} bytes.")
                    return
                try:
                    yield self.view.decode_json(text)
                except orjson.JSONDecodeError:
                    if not ignore_parsing_errors:
                        raise NonJsonMessageReceived from None
        except KeyError:
            raise NonTextMessageReceived from None
        except WebSocketDisconnect:
            pass


class TrustedDocumentsWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws `subscribe` by a stored document's id too; allow-list mode holds here as over HTTP."""

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        payload = cast(dict[str, Any], message.get("payload"))
        if self.connection_acknowledged and message["id"] not in self.operations and self._ours(payload):
            try:
                params = params_from_payload(payload)
                resolved = await cast(VouchsafeGraphQL, self.view).documents.resolve(params, JSON)
            except HTTPRefusal as refusal:
                error = {"message": refusal.message, "extensions": {"code": refusal.code}}
                await self.send_message(cast(Message, {"id": message["id"], "type": "error", "payload": [error]}))
                return
            message = cast(SubscribeMessage, {**message, "payload": {**payload, "query": resolved.text}})
        await super().handle_subscribe(message)

    def _ours(self, payload: object) -> bool:
        """A stored document's id, or (allow-list mode) a text to check; anything else is Strawberry's (4400)."""
        if not isinstance(payload, dict):
            return False
        extensions = payload.get("extensions")
        persisted = "documentId" in payload or (isinstance(extensions, dict) and "persistedQuery" in extensions)
        return persisted or (cast(VouchsafeGraphQL, self.view).documents.only and isinstance(payload.get("query"), str))


class VouchsafeGraphQL(GraphQL[Context, None]):
    websocket_adapter_class = LimitedWebSocketAdapter
    graphql_transport_ws_handler_class = TrustedDocumentsWSHandler
    max_message_bytes = 1_048_576
    documents: DocumentStore  # set by routes(): shared by the HTTP front and the WebSocket

    def decode_json(self, data: str | bytes) -> object:
        # orjson refuses nesting deeper than 1,024 levels as invalid JSON; json.loads recursed until it failed.
        return orjson.loads(data)

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
        # Given by web.observe, which also returns it in the X-Request-Id header.
        request_id = request.scope.get("state", {}).get("request_id") or secrets.token_hex(8)
        if prefetched.actor is not None:
            logs.ACCOUNT_ID.set(prefetched.actor.account_id)
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


class GraphQLOverHTTP:
    """POST /graphql per the GraphQL-over-HTTP specification, with the cached-answer front.

    The body is read under its size limit, parsed once and checked (web.graphql_http);
    then a dashboard's repeated read of unchanged data is answered from the response
    cache before any GraphQL work: no parsing, validation, execution or JSON encoding.
    Only an answer the ResponseCache extension stored is ever sent, and it stored only
    cacheable reads without errors, under the exact document, variables, principal, role
    and tenant version; the session is checked on every request (revocation holds at
    once). Everything else is executed here, with the status code the negotiated media
    type calls for. GET serves GraphiQL (development) and refuses operations (405).
    """

    def __init__(self, graphql: VouchsafeGraphQL, settings: Settings) -> None:
        self.graphql = graphql
        self.max_body_bytes = settings.max_body_bytes
        self.ide = None if settings.production else graphiql.page_response
        self.documents = graphql.documents

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        media = JSON
        try:
            if request.method == "GET" and _persisted_by_url(request):
                # A stored document by id (the draft's persisted document request): queries only.
                chosen = response_media_type(request.headers.get("accept", ""))
                if chosen is None:
                    raise HTTPRefusal(406, NOT_ACCEPTABLE, "NOT_ACCEPTABLE")
                media = chosen
                resolved = await self.documents.resolve(params_from_url(request.query_params), media)
                response = await self._cached(request, resolved.params, media) or await self._execute(
                    request, resolved, media
                )
            elif request.method == "GET" and self.ide is not None and _wants_ide(request):
                response = self.ide()
            elif request.method != "POST":
                raise HTTPRefusal(
                    405,
                    GET_REFUSED if request.method == "GET" else METHOD_REFUSED,
                    "METHOD_NOT_ALLOWED",
                    headers={"Allow": "POST"},
                )
            else:
                chosen = response_media_type(request.headers.get("accept", ""))
                if chosen is None:
                    raise HTTPRefusal(406, NOT_ACCEPTABLE, "NOT_ACCEPTABLE")
                media = chosen
                check_content_type(request.headers.get("content-type"))
                body = await read_body(receive, request.headers.get("content-length"), self.max_body_bytes)
                resolved = await self.documents.resolve(parse_params(body), media)
                response = await self._cached(request, resolved.params, media) or await self._execute(
                    request, resolved, media
                )
        except HTTPRefusal as refusal:
            response = refusal_response(refusal, media)
        except Exception as exc:
            # The session check or the context hit a dependency that is down: 503, retryable.
            if not is_unavailable(exc):
                raise
            log.warning("%s unavailable before GraphQL ran", describe(exc))
            response = refusal_response(unavailable_refusal(), media)
        await response(scope, receive, send)

    async def _cached(self, request: Request, params: GraphQLParams, media: str) -> Response | None:
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            return None
        actor = await authenticate(token)
        request.scope[PREFETCHED] = Prefetched(actor, None)
        # A write is never answered from the cache: skip the lookup (a miss would be harmless).
        if actor is None or params.query is None or params.query.lstrip().startswith(("mutation", "subscription")):
            return None
        resources: AppResources = request.app.state.resources
        key = [params.query, params.variables or {}, params.operation_name]
        lookup = await response_cache.look_up(resources.redis, resources.settings.queue_name, actor, key)
        request.scope[PREFETCHED] = Prefetched(actor, lookup)
        if lookup is None or lookup.stored is None:
            return None
        return Response(b'{"data":' + lookup.stored + b"}", media_type=CONTENT_TYPES[media])

    async def _execute(self, request: Request, resolved: Resolved, media: str) -> Response:
        params, prepared = resolved.params, resolved.prepared
        # GET runs stored queries only (GraphQL-over-HTTP: a mutation by GET is 405).
        allowed = HTTP_OPERATIONS if request.method == "POST" else GET_OPERATIONS
        if prepared is not None:
            # Refused before the context is built, as the generic path refuses before anything runs.
            kind = prepared.operation_type(params.operation_name)
            if kind is not None and kind not in allowed:
                raise _operation_refusal(request)
        sub_response = await self.graphql.get_sub_response(request)
        context = await self.graphql.get_context(request, sub_response)
        try:
            if prepared is not None:
                result = await execute_prepared(
                    cast(Schema, self.graphql.schema),
                    prepared,
                    variable_values=params.variables,
                    context_value=context,
                    operation_name=params.operation_name,
                    allowed_operation_types=allowed,
                    operation_extensions=params.extensions,
                )
            else:
                result = await self.graphql.schema.execute(
                    resolved.text,
                    variable_values=params.variables,
                    context_value=context,
                    operation_name=params.operation_name,
                    allowed_operation_types=allowed,
                    operation_extensions=params.extensions,
                )
        except InvalidOperationTypeError:
            raise _operation_refusal(request) from None
        except CannotGetOperationTypeError as exc:
            result = ExecutionResult(data=None, errors=[GraphQLError(exc.as_http_error_reason())])
        except MissingQueryError:
            result = ExecutionResult(data=None, errors=[GraphQLError("The query is empty.")])
        answer: dict[str, object] = dict(process_result(result))
        status = 200
        errors = result.errors or []
        if media == GRAPHQL_RESPONSE_JSON and answer.get("data") is None and errors and not any(e.path for e in errors):
            # A request error (parse, validation, variables, the operation) is the client's: 400
            # without `data`; one of ours before execution is 500. Field errors, with a path, stay 200.
            codes = {(e.extensions or {}).get("code") for e in errors}
            status = 500 if "INTERNAL_SERVER_ERROR" in codes else 503 if "SERVICE_UNAVAILABLE" in codes else 400
            answer.pop("data", None)
        encoded = context.encoded_data
        if encoded is not None and encoded[0] is result.data and answer.keys() == {"data"}:
            body = b'{"data":' + encoded[1] + b"}"  # what orjson.dumps(answer) gives, encoded once
        else:
            body = orjson.dumps(answer)
        return Response(
            body,
            status_code=status,
            media_type=CONTENT_TYPES[media],
            headers=dict(sub_response.headers),
        )


def _operation_refusal(request: Request) -> HTTPRefusal:
    if request.method == "GET":
        return HTTPRefusal(405, GET_MUTATION_REFUSED, "METHOD_NOT_ALLOWED", headers={"Allow": "POST"})
    return HTTPRefusal(400, SUBSCRIPTION_OVER_HTTP, "SUBSCRIPTION_OVER_HTTP")


def _persisted_by_url(request: Request) -> bool:
    """GET with a stored document's id (and no text: GET never runs a document's text)."""
    params = request.query_params
    return "query" not in params and ("documentId" in params or "persistedQuery" in params.get("extensions", ""))


def unavailable_refusal() -> HTTPRefusal:
    return HTTPRefusal(
        503,
        UNAVAILABLE_MESSAGE,
        "SERVICE_UNAVAILABLE",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        extensions={"retryAfterSeconds": RETRY_AFTER_SECONDS},
    )


def _wants_ide(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "query" not in request.query_params and ("text/html" in accept or "*/*" in accept)


def routes(settings: Settings) -> list[BaseRoute]:
    """/graphql over HTTP (the GraphQL-over-HTTP front) and over graphql-transport-ws; GraphiQL's assets."""
    view = VouchsafeGraphQL(
        build_schema(production=settings.production),
        graphql_ide=None,  # served by the front, from vouchsafe's own assets (web.graphiql)
        allow_queries_via_get=False,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        allowed_origins=settings.allowed_origins,
        keep_alive=True,
        keep_alive_interval=KEEP_ALIVE_SECONDS,
        max_subscriptions_per_connection=MAX_SUBSCRIPTIONS_PER_CONNECTION,
    )
    view.max_message_bytes = settings.max_body_bytes
    view.documents = DocumentStore(cast(Schema, view.schema), settings)
    http: list[BaseRoute] = [Route("/graphql", GraphQLOverHTTP(view, settings)), WebSocketRoute("/graphql", view)]
    return http + ([] if settings.production else graphiql.routes)
