"""E03: GraphQL over HTTP as its specification says: every malformed request is a 4xx in JSON, never a 500.

Through the ASGI app as a client sends it; the body limit also against bodies sent in
chunks without a length, and the WebSocket's message limit on a real connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from settings import Settings
from tests.support.api import Api, loopback_client
from tests.support.factories import PASSWORD, unique_email
from tests.support.live import served

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON_BODY = {"Content-Type": "application/json"}
MODERN = {**JSON_BODY, "Accept": GRAPHQL_RESPONSE}
LIMIT = 4_096


def sign_up_document(email: str) -> str:
    fields = f'email: "{email}", password: "{PASSWORD}", accountName: "Acme"'
    return f"mutation {{ signUp(input: {{{fields}}}) {{ user {{ id }} }} }}"


async def user_exists(email: str) -> bool:
    import models

    return await models.User.filter(email=email).exists()


def refused(response: httpx.Response, status: int) -> dict[str, Any]:
    """A refusal: the status, a JSON body of errors each with a message, and nothing else."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(("application/json", GRAPHQL_RESPONSE))
    body = response.json()
    assert set(body) == {"errors"}, body
    assert body["errors"]
    assert all(error["message"] for error in body["errors"])
    return dict(body)


OURS = ("vouchsafe", "strawberry", "uvicorn", "starlette", "graphql")


@pytest.fixture
def no_unexpected_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.ERROR)
    yield
    # What the server logs about a request; asyncio's notes on a Redis connection the app's
    # shutdown cut are about the app's lifetime, not about the request.
    unexpected = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith(OURS)]
    assert not unexpected, unexpected


@pytest.fixture
async def small_api(settings: Settings) -> AsyncIterator[Api]:
    """The app with a 4 KiB body limit, so a test needs no megabytes."""
    from server import create_app

    app = create_app(replace(settings, max_body_bytes=LIMIT))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=loopback_client())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield Api(http)


@pytest.mark.usefixtures("no_unexpected_errors")
class TestMalformedBodies:
    @pytest.mark.parametrize("body", [b"null", b"1", b"[]", b'"query"', b"true"])
    async def test_a_body_that_is_not_a_json_object_is_400(self, api: Api, body: bytes) -> None:
        refused(await api.http.post("/graphql", content=body, headers=JSON_BODY), 400)

    async def test_invalid_utf8_is_400(self, api: Api) -> None:
        body = b'{"query": "{ products { code } }\xff"}'
        refused(await api.http.post("/graphql", content=body, headers=JSON_BODY), 400)

    @pytest.mark.parametrize("where", ["body", "variables"])
    async def test_json_nested_5000_deep_is_400(self, api: Api, where: str) -> None:
        deep = "[" * 5_000 + "]" * 5_000
        body = deep if where == "body" else f'{{"query": "{{ products {{ code }} }}", "variables": {{"v": {deep}}}}}'
        refused(await api.http.post("/graphql", content=body.encode(), headers=JSON_BODY), 400)

    async def test_invalid_json_is_400(self, api: Api) -> None:
        refused(await api.http.post("/graphql", content=b'{"query":', headers=JSON_BODY), 400)

    @pytest.mark.parametrize(
        "payload",
        [
            {"qeury": "{ products { code } }"},
            {"query": 1},
            {"query": "{ products { code } }", "variables": [7]},
            {"query": "{ products { code } }", "operationName": 0},
            {"query": "{ products { code } }", "extensions": "x"},
        ],
    )
    async def test_parameters_of_the_wrong_shape_are_400(self, api: Api, payload: dict[str, Any]) -> None:
        refused(await api.http.post("/graphql", json=payload), 400)

    async def test_an_empty_body_is_400(self, api: Api) -> None:
        refused(await api.http.post("/graphql", content=b"", headers=JSON_BODY), 400)


@pytest.mark.usefixtures("no_unexpected_errors")
class TestMethodsAndMediaTypes:
    @pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
    async def test_a_body_that_is_not_json_is_415(self, api: Api, content_type: str | None) -> None:
        email = unique_email("ctype")
        body = json.dumps({"query": sign_up_document(email)}).encode()
        headers = {"Content-Type": content_type} if content_type else {}
        refused(await api.http.post("/graphql", content=body, headers=headers), 415)
        assert not await user_exists(email)

    async def test_a_mutation_via_get_is_405_and_does_not_run(self, api: Api) -> None:
        email = unique_email("get")
        response = await api.http.get("/graphql", params={"query": sign_up_document(email)})
        refused(response, 405)
        assert response.headers["Allow"] == "POST"
        assert not await user_exists(email)

    @pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
    async def test_other_methods_are_405_in_json(self, api: Api, method: str) -> None:
        refused(await api.http.request(method, "/graphql", json={"query": "{ products { code } }"}), 405)

    async def test_an_accept_header_without_a_graphql_type_is_406(self, api: Api) -> None:
        headers = {**JSON_BODY, "Accept": "text/html"}
        refused(await api.http.post("/graphql", json={"query": "{ products { code } }"}, headers=headers), 406)

    @pytest.mark.parametrize(
        ("accept", "media_type"),
        [
            (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
            ("application/json", "application/json"),
            ("*/*", "application/json"),
            (None, "application/json"),
            (f"application/json;q=0.5, {GRAPHQL_RESPONSE}", GRAPHQL_RESPONSE),
            (f"{GRAPHQL_RESPONSE};q=0.1, application/json", "application/json"),
        ],
    )
    async def test_the_answer_has_the_media_type_the_client_prefers(
        self, api: Api, accept: str | None, media_type: str
    ) -> None:
        headers = {**JSON_BODY, **({"Accept": accept} if accept else {})}
        response = await api.http.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
        assert response.status_code == 200
        assert response.headers["content-type"].split(";")[0] == media_type
        assert response.json() == {"data": {"__typename": "Query"}}


@pytest.mark.usefixtures("no_unexpected_errors")
class TestStatusCodesByMediaType:
    """application/graphql-response+json: request errors are 400 without `data`; application/json keeps 200."""

    DOCUMENTS = [
        pytest.param({"query": "{"}, id="parse"),
        pytest.param({"query": "{ noSuchField }"}, id="validation"),
        pytest.param({"query": "query Q($id: ID!) { node(id: $id) { id } }", "variables": {"id": None}}, id="variable"),
        pytest.param({"query": "query A { __typename } query B { __typename }"}, id="no-operation-name"),
        pytest.param({"query": "query A { __typename }", "operationName": "B"}, id="unknown-operation"),
    ]

    @pytest.mark.parametrize("payload", DOCUMENTS)
    async def test_request_errors_are_400_for_graphql_response_json(self, api: Api, payload: dict[str, Any]) -> None:
        response = await api.http.post("/graphql", json=payload, headers=MODERN)
        assert response.headers["content-type"] == f"{GRAPHQL_RESPONSE}; charset=utf-8"
        refused(response, 400)

    @pytest.mark.parametrize("payload", DOCUMENTS)
    async def test_request_errors_are_200_with_null_data_for_application_json(
        self, api: Api, payload: dict[str, Any]
    ) -> None:
        response = await api.http.post("/graphql", json=payload, headers={**JSON_BODY, "Accept": "application/json"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["data"] is None, body
        assert body["errors"], body

    async def test_field_errors_are_200_with_data(self, api: Api) -> None:
        response = await api.http.post("/graphql", json={"query": "{ viewer { account { id } } }"}, headers=MODERN)
        assert response.status_code == 200, response.text

    async def test_several_operations_need_an_operation_name(self, api: Api) -> None:
        email = unique_email("ops")
        document = f"query A {{ __typename }} {sign_up_document(email).replace('mutation', 'mutation B', 1)}"
        body = refused(await api.http.post("/graphql", json={"query": document}, headers=MODERN), 400)
        assert body["errors"][0]["message"] == "Must provide operation name if query contains multiple operations."
        assert not await user_exists(email)
        named = await api.http.post("/graphql", json={"query": document, "operationName": "A"}, headers=MODERN)
        assert named.json() == {"data": {"__typename": "Query"}}

    async def test_a_subscription_over_http_is_400_pointing_to_the_websocket(self, api: Api) -> None:
        for headers in (MODERN, JSON_BODY):
            payload = {"query": "subscription { accountUpdated { id } }"}
            body = refused(await api.http.post("/graphql", json=payload, headers=headers), 400)
            assert "WebSocket" in body["errors"][0]["message"]
            assert body["errors"][0]["extensions"]["code"] == "SUBSCRIPTION_OVER_HTTP"


class Chunks:
    """A body sent in pieces, without Content-Length (Transfer-Encoding: chunked); counts what it sent."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.sent += 1
            yield chunk


@pytest.mark.usefixtures("no_unexpected_errors")
class TestBodyLimit:
    async def test_a_body_over_the_limit_is_413_and_does_not_run(self, small_api: Api) -> None:
        email = unique_email("big")
        payload = {"query": sign_up_document(email), "extensions": {"padding": "x" * LIMIT}}
        body = refused(await small_api.http.post("/graphql", json=payload), 413)
        assert str(LIMIT) in body["errors"][0]["message"]
        assert not await user_exists(email)

    async def test_a_chunked_body_is_counted_while_it_is_read(self, small_api: Api) -> None:
        email = unique_email("chunked")
        head = json.dumps({"query": sign_up_document(email), "extensions": {"padding": ""}})[:-2].encode()
        stream = Chunks([head, *[b"x" * 1_024] * 40, b'"}}'])
        request = small_api.http.build_request("POST", "/graphql", headers=JSON_BODY, content=stream.__aiter__())
        response = await small_api.http.send(request)
        assert "content-length" not in request.headers
        assert request.headers["transfer-encoding"] == "chunked"
        refused(response, 413)
        assert stream.sent < 10, "refused while reading, not after the whole body"
        assert not await user_exists(email)

    async def test_a_body_at_the_limit_runs(self, small_api: Api) -> None:
        email = unique_email("fits")
        payload: dict[str, Any] = {"query": sign_up_document(email), "extensions": {"padding": ""}}
        room = LIMIT - len(json.dumps(payload, separators=(",", ":")))
        payload["extensions"]["padding"] = "x" * room
        content = json.dumps(payload, separators=(",", ":")).encode()
        assert len(content) == LIMIT
        response = await small_api.http.post("/graphql", content=content, headers=JSON_BODY)
        assert response.status_code == 200, response.text
        assert "errors" not in response.json(), response.text
        assert await user_exists(email)

    async def test_the_cached_answer_front_applies_the_limit_too(self, small_api: Api) -> None:
        # A signed-in read is what the front answers from the cache: it is refused as well.
        payload = {"query": "{ viewer { user { id } } }", "variables": {"padding": "x" * LIMIT}}
        headers = {"Authorization": "Bearer vss_whatever"}
        refused(await small_api.http.post("/graphql", json=payload, headers=headers), 413)


async def test_a_websocket_message_over_the_limit_closes_the_connection(settings: Settings) -> None:
    from server import create_app

    app = create_app(replace(settings, max_body_bytes=LIMIT))
    async with app.router.lifespan_context(app), served(app) as url:
        async with connect(url, subprotocols=["graphql-transport-ws"], open_timeout=10) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": {"padding": "x" * LIMIT}}))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), timeout=10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
        # a message under the limit is read: here, a connection_init without a valid token (4403)
        async with connect(url, subprotocols=["graphql-transport-ws"], open_timeout=10) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": {"padding": "x" * (LIMIT - 100)}}))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), timeout=10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4403
