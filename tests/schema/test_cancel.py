"""Cancelling an order: the three rules, the full refund, exactly once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from infra import clock
from models import Account, LedgerEntry, LedgerEntryKind, Voucher, VoucherOrder, VoucherStatus
from tests.support.api import Api
from tests.support.factories import line, member, order, partner, sign_in
from tests.support.running import shifted

CANCEL = """mutation C($input: VoucherOrderCancelInput!) { voucherOrderCancel(input: $input) {
  order { status statusCounts { cancelled validUnused } cancellable cancelBlockers { code } }
  errors { code field message } } }"""
BLOCKERS = (
    """query B($id: ID!) { node(id: $id) { ... on VoucherOrder { cancellable cancelBlockers { code message } } } }"""
)


async def cancel(api: Api, token: str, order_id: str, key: str | None = None) -> dict:
    result = await api(CANCEL, {"input": {"orderId": order_id, "idempotencyKey": key}}, token=token)
    return dict(result["data"]["voucherOrderCancel"])


async def placed(api: Api, p: dict, **extra: object) -> dict:
    result = await order(api, p["token"], line("BASIC_OV", 3), **({"paymentMethod": "ACCOUNT_BALANCE"} | extra))
    assert result["errors"] == [], result
    return dict(result["order"])


class TestCancel:
    async def test_balance_order_is_cancelled_and_refunded(self, api: Api) -> None:
        p = await partner(api, balance="1000.00")
        o = await placed(api, p)
        assert (await Account.get(id=p["account_id"])).balance == 100_000 - 52_500
        result = await cancel(api, p["token"], o["id"])
        assert result["errors"] == []
        assert result["order"]["status"] == "CANCELLED"
        assert result["order"]["statusCounts"] == {"cancelled": 3, "validUnused": 0}
        assert result["order"]["cancelBlockers"] == [{"code": "ORDER_ALREADY_CANCELLED"}]
        assert (await Account.get(id=p["account_id"])).balance == 100_000
        refund = await LedgerEntry.get(account_id=p["account_id"], kind=LedgerEntryKind.REFUND)
        assert refund.amount == 52_500
        assert refund.balance_after == 100_000
        again = await cancel(api, p["token"], o["id"])
        assert again["errors"][0]["code"] == "ORDER_ALREADY_CANCELLED"
        assert await LedgerEntry.filter(account_id=p["account_id"], kind=LedgerEntryKind.REFUND).count() == 1

    async def test_card_order_is_refunded_through_the_gateway(self, api: Api) -> None:
        p = await partner(api, balance=None)
        o = await placed(api, p, paymentMethod="CREDIT_CARD", cardToken="tok_visa")
        assert (await cancel(api, p["token"], o["id"]))["errors"] == []
        model = await VoucherOrder.get(number=o["number"])
        assert (model.gateway_refund_reference or "").startswith("re_sandbox_")
        assert await LedgerEntry.filter(account_id=p["account_id"], kind=LedgerEntryKind.REFUND).count() == 0

    async def test_day_30_can_day_31_cannot(self, api: Api) -> None:
        p = await partner(api)
        on_time, late = await placed(api, p), await placed(api, p)
        with shifted(timedelta(days=30) - timedelta(minutes=1)):  # still on day 30
            token = await sign_in(api, p["email"])
            assert (await cancel(api, token, on_time["id"]))["errors"] == []
        with shifted(timedelta(days=30, seconds=1)):
            token = await sign_in(api, p["email"])
            before = (await api(BLOCKERS, {"id": late["id"]}, token=token))["data"]["node"]
            assert before["cancellable"] is False
            assert [b["code"] for b in before["cancelBlockers"]] == ["CANCEL_WINDOW_CLOSED"]
            result = await cancel(api, token, late["id"])
            assert [(e["code"], e["field"]) for e in result["errors"]] == [
                ("CANCEL_WINDOW_CLOSED", ["input", "orderId"])
            ]

    async def test_a_redeemed_code_blocks_even_after_release(self, api: Api) -> None:
        p = await partner(api)
        o = await placed(api, p)
        model = await VoucherOrder.get(number=o["number"])
        voucher = await Voucher.filter(order_id=model.id).first()
        assert voucher is not None
        # redeemed once, then released (a certificate cancelled within 30 days): used_at stays
        await Voucher.filter(id=voucher.id).update(used_at=clock.now())
        blockers = (await api(BLOCKERS, {"id": o["id"]}, token=p["token"]))["data"]["node"]["cancelBlockers"]
        assert [b["code"] for b in blockers] == ["ORDER_HAS_REDEEMED_VOUCHERS"]
        assert (await cancel(api, p["token"], o["id"]))["errors"][0]["code"] == "ORDER_HAS_REDEEMED_VOUCHERS"
        assert await Voucher.filter(order_id=model.id, status=VoucherStatus.CANCELLED).count() == 0

    async def test_an_expired_voucher_blocks(self, api: Api) -> None:
        p = await partner(api)
        o = await placed(api, p)
        model = await VoucherOrder.get(number=o["number"])
        voucher = await Voucher.filter(order_id=model.id).first()
        assert voucher is not None
        await Voucher.filter(id=voucher.id).update(expires_at=clock.now() - timedelta(seconds=1))
        assert (await cancel(api, p["token"], o["id"]))["errors"][0]["code"] == "ORDER_HAS_EXPIRED_VOUCHERS"

    async def test_members_and_other_tenants_cannot_cancel(self, api: Api) -> None:
        p, other = await partner(api), await partner(api)
        o = await placed(api, p)
        assert (await cancel(api, await member(api, p["token"], "MEMBER"), o["id"]))["errors"][0]["code"] == (
            "PERMISSION_DENIED"
        )
        assert (await cancel(api, other["token"], o["id"]))["errors"][0]["code"] == "NOT_FOUND"


@pytest.mark.postgres
class TestConcurrentCancels:
    async def test_ten_cancels_refund_once(self, api: Api) -> None:
        p = await partner(api, balance="1000.00")
        o = await placed(api, p)
        clients = [api.client() for _ in range(10)]
        results = await asyncio.gather(*(c(CANCEL, {"input": {"orderId": o["id"]}}, token=p["token"]) for c in clients))
        outcomes = [r["data"]["voucherOrderCancel"] for r in results]
        assert sum(1 for r in outcomes if not r["errors"]) == 1
        assert {r["errors"][0]["code"] for r in outcomes if r["errors"]} == {"ORDER_ALREADY_CANCELLED"}
        assert await LedgerEntry.filter(account_id=p["account_id"], kind=LedgerEntryKind.REFUND).count() == 1
        assert (await Account.get(id=p["account_id"])).balance == 100_000
