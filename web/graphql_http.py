"""GraphQL over HTTP, the request side: media types, the body's size and shape, refusals as JSON.

What the GraphQL-over-HTTP specification asks of a server before any GraphQL work:
the response media type from `Accept` (406 when none fits), a JSON request body
(415 otherwise), at most `max_body_bytes` of it (413, counted while it is read, so a
chunked body is refused as early as one that declares its length), an object with a
string `query` (400 otherwise). Every refusal is `{"errors": [...]}` in JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Receive

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"
# What goes in Content-Type: the legacy type exactly as before, the new one with its charset.
CONTENT_TYPES = {GRAPHQL_RESPONSE_JSON: f"{GRAPHQL_RESPONSE_JSON}; charset=utf-8", JSON: JSON}


class HTTPRefusal(Exception):
    """A request refused before GraphQL sees it: an HTTP status and one error for the client."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str = "BAD_REQUEST",
        headers: dict[str, str] | None = None,
        extensions: dict[str, object] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.extensions = extensions or {}


def refusal_response(refusal: HTTPRefusal, media_type: str = JSON) -> Response:
    extensions = {"code": refusal.code, **refusal.extensions}
    body = orjson.dumps({"errors": [{"message": refusal.message, "extensions": extensions}]})
    return Response(body, status_code=refusal.status, media_type=CONTENT_TYPES[media_type], headers=refusal.headers)


@lru_cache(maxsize=256)
def response_media_type(accept: str) -> str | None:
    """The media type to answer in, by the Accept header's preferences; None when it accepts neither.

    No header, `*/*` and `application/*` get `application/json`, as clients that predate
    the specification's new type expect (the audit's 47DE and 80D8 say so too).
    """
    if not accept.strip():
        return JSON
    best: tuple[float, int, str] | None = None
    for position, item in enumerate(accept.split(",")):
        media, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.lower()
        chosen = media if media in CONTENT_TYPES else JSON if media in ("*/*", "application/*") else None
        if chosen is None or quality <= 0:
            continue
        candidate = (quality, -position, chosen)
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    return best[2] if best else None


def check_content_type(header: str | None) -> None:
    """Only JSON request bodies, in UTF-8 (the specification's one required encoding)."""
    if not header:
        raise HTTPRefusal(415, "Send the request as JSON: Content-Type: application/json.", "UNSUPPORTED_MEDIA_TYPE")
    media, *params = (part.strip().lower() for part in header.split(";"))
    if media != JSON:
        raise HTTPRefusal(415, f"Unsupported content type {media!r}: send application/json.", "UNSUPPORTED_MEDIA_TYPE")
    for param in params:
        name, _, value = param.partition("=")
        if name.strip() == "charset" and value.strip().strip('"') not in ("utf-8", "utf8"):
            raise HTTPRefusal(415, "Request bodies are read as UTF-8 only.", "UNSUPPORTED_MEDIA_TYPE")


def too_large(limit: int) -> HTTPRefusal:
    return HTTPRefusal(
        413, f"The request body is larger than {limit} bytes.", "PAYLOAD_TOO_LARGE", headers={"Connection": "close"}
    )


async def read_body(receive: Receive, content_length: str | None, limit: int) -> bytes:
    """The whole body, or a 413 as soon as it is known to be over the limit (declared or counted)."""
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise HTTPRefusal(400, "Content-Length is not a number.") from None
        if declared > limit:
            raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HTTPRefusal(400, "The client went away before the body was read.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


@dataclass(frozen=True)
class GraphQLParams:
    query: str | None  # None for a persisted document request (web.documents fills it in)
    variables: dict[str, Any] | None
    operation_name: str | None
    extensions: dict[str, Any] | None
    document_id: str | None = None

    @property
    def persisted(self) -> bool:
        """Names a stored document: `documentId`, or Apollo's `extensions.persistedQuery`."""
        return self.document_id is not None or "persistedQuery" in (self.extensions or {})


def parse_params(body: bytes) -> GraphQLParams:
    """The request's parameters from a JSON body; 400 for anything but the specification's shape.

    orjson refuses invalid UTF-8 and nesting deeper than 1,024 levels as invalid JSON, so
    neither reaches a recursive parser.
    """
    if not body:
        raise HTTPRefusal(400, "The request body is empty: send a JSON object with a query.")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPRefusal(400, f"The request body is not valid JSON in UTF-8: {exc}.") from None
    if not isinstance(data, dict):
        raise HTTPRefusal(
            400, 'The request body must be a JSON object such as {"query": "{ viewer { user { id } } }"}.'
        )
    return params_from_payload(data)


def params_from_payload(data: dict[str, Any]) -> GraphQLParams:
    """The parameters of a request object (an HTTP body, a WebSocket `subscribe` payload)."""
    query = data.get("query")
    document_id = data.get("documentId")
    if not isinstance(document_id, str | None) or document_id == "":
        raise HTTPRefusal(400, "`documentId` must be a non-empty string.")
    if query is not None and not isinstance(query, str):
        raise HTTPRefusal(400, "`query` must be a string.")
    operation_name = data.get("operationName")
    if not isinstance(operation_name, str | None):
        raise HTTPRefusal(400, "`operationName` must be a string or null.")
    variables = data.get("variables")
    if not isinstance(variables, dict | None):
        raise HTTPRefusal(400, "`variables` must be an object or null.")
    extensions = data.get("extensions")
    if not isinstance(extensions, dict | None):
        raise HTTPRefusal(400, "`extensions` must be an object or null.")
    params = GraphQLParams(query, variables, operation_name or None, extensions, document_id)
    if query is None and not params.persisted:
        raise HTTPRefusal(400, "The request must have a `query` string (or the `documentId` of a stored document).")
    return params


def params_from_url(query_params: Mapping[str, str]) -> GraphQLParams:
    """A persisted document request by GET: `documentId` (or APQ's `extensions`), JSON-encoded variables."""
    data: dict[str, Any] = {}
    for name in ("documentId", "operationName"):
        if name in query_params:
            data[name] = query_params[name]
    for name in ("variables", "extensions"):
        raw = query_params.get(name)
        if raw:
            try:
                data[name] = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise HTTPRefusal(400, f"`{name}` must be JSON.") from None
    return params_from_payload(data)
