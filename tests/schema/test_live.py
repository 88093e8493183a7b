"""Live updates end to end: the gql client over a real socket, as a dashboard follows its orders.

Runs on the embedded default (SQLite, the in-process Redis stand-in and worker) and
again on PostgreSQL + Redis. Changes come from other clients over HTTP, from the
worker (PDF) and from the expiry sweep; the subscriber sees each within a second.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from gql.transport.exceptions import TransportQueryError
from strawberry.relay import GlobalID

from infra import clock
from models import Voucher
from services import expiry
from settings import Settings
from tests.support.api import Api
from tests.support.documents import ORDER_CANCEL, REVEAL, THRESHOLD_UPDATE
from tests.support.factories import line, order, partner, tenant
from tests.support.live import ACCOUNT_UPDATED, ORDER_UPDATED, Stream, latest_event, order_of, served, session_for
from tests.support.running import running_worker

REDEEM = """mutation R($input: VoucherRedeemInput!) { voucherRedeem(input: $input) {
  certificateRequest { id } errors { code message } } }"""
RELEASE = """mutation C($id: ID!) { certificateRequestCancel(input: {id: $id}) { voucherReleased errors { code } } }"""
WITHIN_A_SECOND = 1.0


@pytest.fixture
async def url(app: Any, settings: Settings) -> AsyncIterator[str]:
    async with served(app) as ws_url, running_worker(settings):
        yield ws_url


async def placed(api: Api, token: str, quantity: int) -> dict[str, Any]:
    result = await order(api, token, line("BASIC_OV", quantity), paymentMethod="ACCOUNT_BALANCE")
    assert result["errors"] == [], result
    return dict(result["order"])


async def timed(api: Api, query: str, variables: dict[str, Any], token: str) -> tuple[float, Any]:
    """Run a mutation; return when its answer came and the answer."""
    result = await api(query, variables, token=token)
    assert "errors" not in result, result
    return time.monotonic(), result["data"]


async def test_an_order_stream_sees_each_change_within_a_second(api: Api, url: str) -> None:
    p = await partner(api)
    customer = await tenant(api)
    first = await placed(api, p["token"], 2)
    second = await placed(api, p["token"], 1)
    third = await placed(api, p["token"], 1)

    async with session_for(url, p["token"]) as session:
        stream = Stream(session, ORDER_UPDATED, {"id": first["id"]})
        doomed = Stream(session, ORDER_UPDATED, {"id": second["id"]})
        cancelled = Stream(session, ORDER_UPDATED, {"id": third["id"]})
        now = order_of(await stream.next())
        assert now["id"] == first["id"]
        assert now["status"] == "ACTIVE"
        assert now["statusCounts"]["validUnused"] == 2
        await doomed.next()
        await cancelled.next()

        # the worker finishes the PDF
        await stream.until(lambda d: order_of(d)["pdf"]["status"] == "READY", within=30)

        # another client reveals the codes
        done, data = await timed(api, REVEAL, {"id": first["id"]}, p["token"])
        code = data["voucherCodesReveal"]["codes"][0]["code"]
        arrived, _ = await stream.until(lambda d: latest_event(order_of(d)) == "CODES_REVEALED")
        assert arrived - done < WITHIN_A_SECOND

        # another tenant redeems one of the codes, then cancels its request: the voucher comes back
        request = {"code": code, "commonName": "shop.example.com"}
        done, data = await timed(api, REDEEM, {"input": request}, customer["token"])
        assert data["voucherRedeem"]["errors"] == [], data
        arrived, redeemed = await stream.until(lambda d: order_of(d)["statusCounts"]["validUsed"] == 1)
        assert arrived - done < WITHIN_A_SECOND
        assert latest_event(order_of(redeemed)) == "VOUCHER_REDEEMED"
        request_id = data["voucherRedeem"]["certificateRequest"]["id"]
        done, data = await timed(api, RELEASE, {"id": request_id}, customer["token"])
        assert data["certificateRequestCancel"]["voucherReleased"] is True
        arrived, released = await stream.until(lambda d: latest_event(order_of(d)) == "VOUCHER_RELEASED")
        assert arrived - done < WITHIN_A_SECOND
        assert order_of(released)["statusCounts"]["validUnused"] == 2

        # the expiry sweep (the worker's periodic job) expires the second order, once its PDF is done
        # (a PDF finished after the sweep would be the latest event instead)
        await doomed.until(lambda d: order_of(d)["pdf"]["status"] == "READY", within=30)
        due = clock.now() - timedelta(minutes=1)
        await Voucher.filter(order_id=GlobalID.from_id(second["id"]).node_id).update(expires_at=due)
        assert await expiry.expire_due(bus=api.bus) >= 1
        _, expired = await doomed.until(lambda d: order_of(d)["statusCounts"]["expired"] == 1)
        assert latest_event(order_of(expired)) == "EXPIRED"

        # the partner cancels the third
        done, data = await timed(api, ORDER_CANCEL, {"id": third["id"]}, p["token"])
        assert data["voucherOrderCancel"]["errors"] == [], data
        arrived, gone = await cancelled.until(lambda d: order_of(d)["status"] == "CANCELLED")
        assert arrived - done < WITHIN_A_SECOND
        assert order_of(gone)["statusCounts"]["cancelled"] == 1
        for s in (stream, doomed, cancelled):
            await s.close()


async def test_the_account_stream_follows_balance_and_settings(api: Api, url: str) -> None:
    p = await partner(api, balance="1000.00")
    async with session_for(url, p["token"]) as session:
        stream = Stream(session, ACCOUNT_UPDATED)
        assert (await stream.next())["accountUpdated"]["balance"]["amount"] == "1000.00"

        done = time.monotonic()
        await placed(api, p["token"], 1)  # a purchase from the balance
        arrived, after = await stream.until(lambda d: d["accountUpdated"]["balance"]["amount"] != "1000.00")
        assert arrived - done < WITHIN_A_SECOND + 1  # includes placing the order
        assert Decimal(after["accountUpdated"]["balance"]["amount"]) < Decimal("1000.00")

        done, _ = await timed(api, THRESHOLD_UPDATE, {"t": "25.00"}, p["token"])
        arrived, _ = await stream.until(
            lambda d: (d["accountUpdated"]["financeSettings"]["lowBalanceThreshold"] or {}).get("amount") == "25.00"
        )
        assert arrived - done < WITHIN_A_SECOND
        await stream.close()


async def test_another_tenants_order_answers_not_found(api: Api, url: str) -> None:
    a = await partner(api)
    b = await tenant(api)
    theirs = await placed(api, a["token"], 1)
    async with session_for(url, b["token"]) as session:
        stream = Stream(session, ORDER_UPDATED, {"id": theirs["id"]})
        with pytest.raises(TransportQueryError) as refused:
            await stream.next()
        assert refused.value.errors
        assert refused.value.errors[0]["extensions"]["code"] == "NOT_FOUND"
    async with session_for(url, b["token"]) as session:
        missing = Stream(session, ORDER_UPDATED, {"id": "Vm91Y2hlck9yZGVyOjk5OTk5OTk="})  # VoucherOrder:9999999
        with pytest.raises(TransportQueryError) as unknown:
            await missing.next()
        assert unknown.value.errors == refused.value.errors  # the same answer as for an id that does not exist
