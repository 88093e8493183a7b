"""The API process's Redis subscription is cut while changes are published; then it comes back.

Pub/sub keeps nothing, so the events of the outage are lost. After the hub
subscribes again it wakes every live subscriber, which reads its current state:
the client is in sync without doing anything, and what it sees is still only its
own tenant's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from server import create_app
from settings import Settings
from tests.support.api import Api, loopback_client
from tests.support.factories import line, order, partner
from tests.support.live import ORDER_FIELDS, ORDER_UPDATED, Stream, order_of, served, session_for
from tests.support.metrics import Scrape
from tests.support.redis import OwnRedis
from tests.support.running import wait_for

pytestmark = pytest.mark.postgres

REVEAL = """mutation R($id: ID!) { voucherCodesReveal(input: {orderId: $id}) { errors { code } } }"""
CANCEL = """mutation C($id: ID!) { voucherOrderCancel(input: {orderId: $id}) { errors { code message } } }"""
NODE = f"""query N($id: ID!) {{ node(id: $id) {{ ... on VoucherOrder {{ {ORDER_FIELDS} }} }} }}"""


@pytest.fixture
async def served_app(settings: Settings, own_redis: OwnRedis) -> AsyncIterator[tuple[Api, Any, str]]:
    app = create_app(replace(settings, redis_url=own_redis.url))
    async with app.router.lifespan_context(app), served(app) as url:
        transport = httpx.ASGITransport(app=app, client=loopback_client())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield Api(http), app, url


async def placed(api: Api, token: str) -> dict[str, Any]:
    result = await order(api, token, line("BASIC_OV", 2), paymentMethod="ACCOUNT_BALANCE")
    assert result["errors"] == [], result
    return dict(result["order"])


async def test_a_dropped_subscription_resyncs_its_clients(
    served_app: tuple[Api, Any, str], own_redis: OwnRedis
) -> None:
    api, app, url = served_app
    hub = app.state.resources.hub
    a, b = await partner(api), await partner(api)
    a_order, b_order = await placed(api, a["token"]), await placed(api, b["token"])
    async with session_for(url, a["token"]) as a_session, session_for(url, b["token"]) as b_session:
        a_stream = Stream(a_session, ORDER_UPDATED, {"id": a_order["id"]})
        b_stream = Stream(b_session, ORDER_UPDATED, {"id": b_order["id"]})
        assert order_of(await a_stream.next())["status"] == "ACTIVE"
        await b_stream.next()

        own_redis.stop()
        # Polled: the stopped redis-server is another process; the hub notices in its own time.
        await wait_for(lambda: _async(not hub.connected.is_set()), within=10)
        for _ in range(4):  # five changes while the subscription is gone; their events are lost
            assert (await api(REVEAL, {"id": a_order["id"]}, token=a["token"]))["data"]["voucherCodesReveal"]
        cancelled = await api(CANCEL, {"id": a_order["id"]}, token=a["token"])
        assert cancelled["data"]["voucherOrderCancel"]["errors"] == [], cancelled
        assert await a_stream.quiet(0.5) == []

        own_redis.start()
        _, resynced = await a_stream.until(lambda m: order_of(m)["status"] == "CANCELLED", within=15)
        assert hub.reconnects >= 1
        metrics = Scrape((await api.http.get("/metrics")).text)
        assert metrics.value("vouchsafe_live_connected") == 1
        assert metrics.value("vouchsafe_live_subscribers") == 2
        now = order_of(resynced)
        # REFUNDED is in, not necessarily first: the worker may finish the PDF once Redis is back
        assert now["statusCounts"]["cancelled"] == 2
        assert "REFUNDED" in [e["node"]["kind"] for e in now["history"]["edges"]]
        # what the client would refetch by query is what the stream resynced to
        fetched = (await api(NODE, {"id": a_order["id"]}, token=a["token"]))["data"]["node"]
        assert fetched == now
        # B was woken too, and read only its own order
        for message in await b_stream.quiet(0.5):
            assert order_of(message)["id"] == b_order["id"]
            assert order_of(message)["status"] == "ACTIVE"
        await a_stream.close()
        await b_stream.close()


async def _async(value: bool) -> bool:
    return value
