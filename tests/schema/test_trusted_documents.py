"""Trusted documents over HTTP and the WebSocket: APQ, documentId (POST and GET), allow-list mode."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
import websockets
from graphql import parse, print_ast

from models import TrustedDocument
from services.trusted_documents import document_hash
from settings import Settings
from tests.support.api import Api, loopback_client
from tests.support.factories import ENABLE_BALANCE, SIGN_IN, SIGN_UP, partner, tenant
from tests.support.live import served
from tests.support.trusted import post, store

VIEWER = "query TrustedViewer { viewer { user { email } } }"
PRODUCTS = "query TrustedProducts { products { code name } }"
SIGN_OUT = "mutation TrustedSignOut { signOut { signedOut } }"
ACCOUNT_UPDATED = "subscription TrustedAccount { accountUpdated { balance { amount } } }"
GRAPHQL_RESPONSE = "application/graphql-response+json"


def unique(document: str) -> str:
    """A document no other test stored (the store is shared by the run)."""
    return f"{document} # {secrets.token_hex(6)}"


def apq(text_or_hash: str, *, with_text: bool) -> dict[str, Any]:
    digest = document_hash(text_or_hash) if with_text else text_or_hash
    body: dict[str, Any] = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": digest}}}
    if with_text:
        body["query"] = text_or_hash
    return body


def code(response: httpx.Response) -> str:
    return str(response.json()["errors"][0]["extensions"]["code"])


class TestDocumentId:
    async def test_a_stored_document_by_its_sha256_answers_as_its_text_does(self, api: Api) -> None:
        account = await tenant(api)
        text = unique(VIEWER)
        await store(text)
        by_text = await post(api, {"query": text}, account["token"])
        for document_id in (f"sha256:{document_hash(text)}", document_hash(text)):
            by_id = await post(api, {"documentId": document_id}, account["token"])
            assert by_id.status_code == 200
            assert by_id.content == by_text.content
            assert by_id.json()["data"]["viewer"]["user"]["email"] == account["email"]

    async def test_a_manifests_own_id(self, api: Api) -> None:
        text = unique(PRODUCTS)
        relay_id = f"relay-{secrets.token_hex(8)}"
        await store(relay_ids={relay_id: text})
        answer = await post(api, {"documentId": relay_id})
        assert answer.status_code == 200
        assert answer.json()["data"]["products"]

    async def test_an_unknown_id_is_one_error(self, api: Api) -> None:
        unknown = f"sha256:{document_hash(unique(PRODUCTS))}"
        legacy = await post(api, {"documentId": unknown})
        assert legacy.status_code == 200
        assert code(legacy) == "PERSISTED_DOCUMENT_NOT_FOUND"
        assert len(legacy.json()["errors"]) == 1
        assert "data" not in legacy.json()
        newer = await post(api, {"documentId": unknown}, accept=GRAPHQL_RESPONSE)
        assert newer.status_code == 404
        assert code(newer) == "PERSISTED_DOCUMENT_NOT_FOUND"

    async def test_text_and_id_together_are_refused(self, api: Api) -> None:
        text = unique(PRODUCTS)
        await store(text)
        refused = await post(api, {"documentId": document_hash(text), "query": text})
        assert refused.status_code == 400

    async def test_get_runs_stored_queries_and_refuses_mutations(self, api: Api) -> None:
        query, mutation = unique(PRODUCTS), unique(SIGN_OUT)
        await store(query, mutation)
        read = await api.http.get("/graphql", params={"documentId": f"sha256:{document_hash(query)}"})
        assert read.status_code == 200
        assert read.json()["data"]["products"]
        write = await api.http.get("/graphql", params={"documentId": f"sha256:{document_hash(mutation)}"})
        assert write.status_code == 405
        assert write.headers["allow"] == "POST"
        # A document's text by GET is refused as before.
        text = await api.http.get("/graphql", params={"query": query}, headers={"Accept": "application/json"})
        assert text.status_code == 405

    async def test_get_with_variables_and_apq(self, api: Api) -> None:
        text = unique("query TrustedNodes($ids: [ID!]!) { nodes(ids: $ids) { id } first: products { code } }")
        await store(text)
        params = {
            "extensions": json.dumps({"persistedQuery": {"version": 1, "sha256Hash": document_hash(text)}}),
            "variables": json.dumps({"ids": []}),
        }
        answer = await api.http.get("/graphql", params=params)
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"]["first"]
        assert answer.json()["data"]["nodes"] == []


class TestApolloAPQ:
    async def test_the_apollo_round_trip_registers_in_development(self, api: Api) -> None:
        text = unique(PRODUCTS)
        digest = document_hash(text)
        first = await post(api, apq(digest, with_text=False))
        # What Apollo Client's persisted-queries link looks for before it sends the text.
        assert first.status_code == 200
        assert first.json() == {
            "errors": [{"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}]
        }
        second = await post(api, apq(text, with_text=True))
        assert second.status_code == 200
        assert second.json()["data"]["products"]
        assert (await TrustedDocument.get(hash=digest)).source == "apq"
        third = await post(api, apq(digest, with_text=False))
        assert third.content == second.content

    async def test_a_hash_that_is_not_the_texts_is_refused_and_nothing_is_stored(self, api: Api) -> None:
        text = unique(PRODUCTS)
        body = apq(text, with_text=True)
        body["query"] = unique(PRODUCTS)
        refused = await post(api, body)
        assert refused.status_code == 400
        assert code(refused) == "PERSISTED_QUERY_HASH_MISMATCH"
        assert not await TrustedDocument.filter(hash=document_hash(text)).exists()

    @pytest.mark.parametrize(
        "persisted", [{"version": 2, "sha256Hash": "0" * 64}, {"version": 1, "sha256Hash": "xyz"}, "x"]
    )
    async def test_malformed_extensions_are_refused(self, api: Api, persisted: Any) -> None:
        refused = await post(api, {"extensions": {"persistedQuery": persisted}})
        assert refused.status_code == 400
        assert code(refused) == "PERSISTED_QUERY_INVALID"

    async def test_an_invalid_document_is_answered_as_by_text_and_not_stored(self, api: Api) -> None:
        text = unique("query Broken { nope }")
        by_apq = await post(api, apq(text, with_text=True))
        by_text = await post(api, {"query": text})
        assert by_apq.content == by_text.content
        assert "Cannot query field" in by_apq.text
        assert not await TrustedDocument.filter(hash=document_hash(text)).exists()


@pytest.fixture
async def only_app(settings: Settings) -> AsyncIterator[Any]:
    from server import create_app

    app = create_app(replace(settings, trusted_documents="only"))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def only_api(only_app: Any) -> AsyncIterator[Api]:
    transport = httpx.ASGITransport(app=only_app, client=loopback_client())
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield Api(http)


class TestAllowList:
    async def test_only_stored_documents_run(self, only_api: Api) -> None:
        stored, other = unique(PRODUCTS), unique(PRODUCTS)
        await store(stored)
        assert (await post(only_api, {"query": stored})).json()["data"]["products"]
        assert (await post(only_api, {"documentId": document_hash(stored)})).json()["data"]["products"]
        for body in ({"query": other}, apq(other, with_text=True)):
            refused = await post(only_api, body)
            assert refused.status_code == 403
            assert code(refused) == "PERSISTED_QUERY_REQUIRED"
            assert "trusted documents" in refused.json()["errors"][0]["message"]
        assert not await TrustedDocument.filter(hash=document_hash(other)).exists()

    async def test_the_projects_own_documents_run_without_loading_them(self, only_api: Api) -> None:
        from cli_documents import MANIFEST
        from web.documents import OWN_MANIFEST, own_documents
        from web.redeem import PAGE

        shipped = json.loads(MANIFEST.read_text(encoding="utf-8"))
        # every instance knows documents/manifest.json from its start: no `documents load`, no row;
        # each document also as graphql-core prints it (what gql sends), and nothing else
        own = own_documents(OWN_MANIFEST)
        printed = {text: print_ast(parse(text)) for text in shipped.values()}
        assert own == shipped | {document_hash(p): p for p in printed.values()}
        products = next(text for text in shipped.values() if text.startswith("query Products"))
        by_id = await post(only_api, {"documentId": f"sha256:{document_hash(products)}"})
        assert by_id.status_code == 200, by_id.text
        assert by_id.json()["data"]["products"]
        # the redemption page is served with the manifest's ids of its documents, by their text
        ids = json.loads(PAGE.split("var DOCUMENT_IDS = ", 1)[1].split(";\n", 1)[0])
        assert len(ids) == 8
        assert all(shipped[document_id.removeprefix("sha256:")] == text for text, document_id in ids.items())
        viewer = "query RedeemViewer { viewer { user { email } } }"
        assert (await post(only_api, {"documentId": ids[viewer]})).status_code == 200
        # its text, exactly, is a trusted document's; anything else is refused before it runs
        assert (await post(only_api, {"query": viewer})).status_code == 200
        assert (await post(only_api, {"query": printed[viewer]})).status_code == 200
        for other in (viewer + " ", "query { products { code } }"):
            refused = await post(only_api, {"query": other})
            assert refused.status_code == 403
            assert code(refused) == "PERSISTED_QUERY_REQUIRED"

    async def test_the_websocket_holds_the_list_too(self, only_app: Any, only_api: Api) -> None:
        await store(SIGN_UP, SIGN_IN, ENABLE_BALANCE)  # what the factory sends, trusted here
        account = await partner(only_api, balance=None)
        stored, other = unique(ACCOUNT_UPDATED), unique(ACCOUNT_UPDATED)
        await store(stored)
        async with served(only_app) as url, websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": {"token": account["token"]}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": other}}))
            refused = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert refused["type"] == "error"
            assert refused["id"] == "1"
            assert refused["payload"][0]["extensions"]["code"] == "PERSISTED_QUERY_REQUIRED"
            subscribe = {"id": "2", "type": "subscribe", "payload": {"documentId": f"sha256:{document_hash(stored)}"}}
            await ws.send(json.dumps(subscribe))
            first = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert first["type"] == "next"
            assert first["payload"]["data"]["accountUpdated"]["balance"]["amount"]
