"""Tenancy and the protocol rules of live updates: who may listen, to what, how, and how much."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from infra.live import Hub
from services import events
from services.events import Change, Topic, account_changed, order_changed
from settings import Settings
from tests.support.api import Api
from tests.support.factories import line, order, partner
from tests.support.live import ACCOUNT_UPDATED, ORDER_UPDATED, Stream, order_of, served, session_for

REVEAL = """mutation R($id: ID!) { voucherCodesReveal(input: {orderId: $id}) { errors { code } } }"""
CANCEL = """mutation C($id: ID!) { voucherOrderCancel(input: {orderId: $id}) { errors { code } } }"""
DEPOSIT = """mutation D { fundsDeposit(input: {amount: "50.00", cardToken: "tok_visa"}) { errors { code } } }"""


@pytest.fixture
async def url(app: Any) -> AsyncIterator[str]:
    async with served(app) as ws_url:
        yield ws_url


async def placed(api: Api, token: str) -> dict[str, Any]:
    result = await order(api, token, line("BASIC_OV", 1), paymentMethod="ACCOUNT_BALANCE")
    assert result["errors"] == [], result
    return dict(result["order"])


async def test_a_tenant_hears_nothing_of_another_tenants_changes(api: Api, url: str) -> None:
    """B follows its own order and account while A's orders and balance change."""
    a, b = await partner(api), await partner(api)
    a_orders = [await placed(api, a["token"]) for _ in range(2)]
    b_order = await placed(api, b["token"])
    async with session_for(url, b["token"]) as session:
        b_stream = Stream(session, ORDER_UPDATED, {"id": b_order["id"]})
        b_account = Stream(session, ACCOUNT_UPDATED)
        assert order_of(await b_stream.next())["id"] == b_order["id"]
        b_account_id = (await b_account.next())["accountUpdated"]["id"]
        await placed(api, a["token"])
        await api(REVEAL, {"id": a_orders[0]["id"]}, token=a["token"])
        await api(CANCEL, {"id": a_orders[1]["id"]}, token=a["token"])
        await api(DEPOSIT, token=a["token"])
        # B's own order may move meanwhile (the worker renders its PDF): only ever B's own
        assert all(order_of(m)["id"] == b_order["id"] for m in await b_stream.quiet(1.0))
        assert all(m["accountUpdated"]["id"] == b_account_id for m in await b_account.quiet(0.1))
        # and B's own change still arrives: the silence above is not a dead stream
        await api(REVEAL, {"id": b_order["id"]}, token=b["token"])
        await b_stream.until(lambda m: "CODES_REVEALED" in [e["node"]["kind"] for e in order_of(m)["history"]["edges"]])
        await b_stream.close()
        await b_account.close()


def test_every_event_is_checked_against_the_subscribers_tenant() -> None:
    """Even an event naming the subscribed id wakes no one unless it names the subscriber's tenant as owner."""
    hub = Hub(
        redis=None,  # type: ignore[arg-type]  # dispatch alone never reaches Redis
        channel="unused",
        decode=events.decode,
    )
    with hub.subscribe(Topic.ORDER, 7, tenant=1) as mine, hub.subscribe(Topic.ACCOUNT, 1, tenant=1) as account:
        hub.dispatch([order_changed(7, 2, "PLACED"), account_changed(2, "DEPOSIT"), Change(Topic.ACCOUNT, 1, 2, "X")])
        assert not mine._pending.is_set()  # noqa: SLF001
        assert not account._pending.is_set()  # noqa: SLF001
        assert hub.refused == 2  # order 7 owned by 2, account 1 claimed by 2; account 2 has no subscriber
        hub.dispatch([order_changed(7, 1, "PLACED")])
        assert mine._pending.is_set()  # noqa: SLF001
        assert not account._pending.is_set()  # noqa: SLF001
    assert hub.subscriber_count == 0


async def raw_close(url: str, subprotocol: str, init: dict[str, Any] | None) -> int | None:
    """Connect, optionally send connection_init, and return the close code the server chose."""
    async with connect(url, subprotocols=[subprotocol], open_timeout=5) as ws:  # type: ignore[list-item]
        try:
            if init is not None:
                await ws.send(json.dumps({"type": "connection_init", "payload": init}))
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), timeout=5))
                if message["type"] == "connection_ack":
                    return None
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None


async def test_the_legacy_graphql_ws_protocol_is_refused(url: str) -> None:
    """A subscriptions-transport-ws client (subprotocol graphql-ws) is turned away."""
    assert await raw_close(url, "graphql-ws", {}) == 4406


async def test_connection_init_needs_a_valid_token(api: Api, url: str) -> None:
    p = await partner(api, balance=None)
    assert await raw_close(url, "graphql-transport-ws", {}) == 4403
    assert await raw_close(url, "graphql-transport-ws", {"authorization": "Bearer vss_not-a-session"}) == 4403
    assert await raw_close(url, "graphql-transport-ws", {"authorization": f"Bearer {p['token']}"}) is None
    assert await raw_close(url, "graphql-transport-ws", {"token": p["token"]}) is None


async def test_subscriptions_per_connection_are_capped(api: Api, url: str) -> None:
    from web.graphql import MAX_SUBSCRIPTIONS_PER_CONNECTION

    p = await partner(api, balance=None)
    async with connect(url, subprotocols=["graphql-transport-ws"], open_timeout=5) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {p['token']}"}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        for n in range(MAX_SUBSCRIPTIONS_PER_CONNECTION + 1):
            payload = {"query": ACCOUNT_UPDATED}
            await ws.send(json.dumps({"id": str(n), "type": "subscribe", "payload": payload}))
        answers: dict[str, list[str]] = {}
        while str(MAX_SUBSCRIPTIONS_PER_CONNECTION) not in answers or len(answers) <= MAX_SUBSCRIPTIONS_PER_CONNECTION:
            message = json.loads(await asyncio.wait_for(ws.recv(), timeout=5))
            answers.setdefault(message["id"], []).append(message["type"])
        assert answers[str(MAX_SUBSCRIPTIONS_PER_CONNECTION)] == ["error"]
        assert all(answers[str(n)] == ["next"] for n in range(MAX_SUBSCRIPTIONS_PER_CONNECTION))


async def test_browser_origins_must_be_allowed(settings: Settings) -> None:
    from server import create_app

    app = create_app(replace(settings, allowed_origins=("https://dash.example.com",)))
    async with app.router.lifespan_context(app), served(app) as url:
        refused = connect(url, subprotocols=["graphql-transport-ws"], origin="https://evil.example.net")  # type: ignore[list-item,arg-type]
        with pytest.raises(InvalidStatus) as rejected:
            async with refused:
                pass
        assert rejected.value.response.status_code == 403
        allowed = connect(url, subprotocols=["graphql-transport-ws"], origin="https://dash.example.com")  # type: ignore[list-item,arg-type]
        async with allowed as ws:
            assert ws.subprotocol == "graphql-transport-ws"
