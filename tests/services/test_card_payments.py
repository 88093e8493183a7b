"""Paying by card, the one path deposits and card orders share: a commit that fails after the charge is refunded."""

from __future__ import annotations

from typing import Any

import pytest

from models import Account, IdempotencyRecord, LedgerEntry, VoucherOrder
from services import finance, orders
from services.catalogue import LineRequest
from services.codes import CodeCipher
from services.errors import DomainError, ErrorCode
from services.events import KeptEvents
from services.orders import OrderRequest
from services.payments import SandboxGateway
from settings import Settings
from tests.support.factories import partner_admin

LINE = LineRequest(product_code="BASIC_OV", quantity=1, validity_years=1, fqdns=1, wildcards=0)


def failing() -> Any:
    async def fail_inside_the_transaction(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the database went away mid-commit")

    return fail_inside_the_transaction


class TestCommitFailsAfterTheCharge:
    async def test_a_deposit_is_refunded_and_nothing_is_credited(
        self, db: None, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        actor = await partner_admin()
        gateway = SandboxGateway()
        monkeypatch.setattr(finance, "post_entry", failing())  # the entry the deposit writes
        with pytest.raises(DomainError) as refused:
            await finance.deposit(
                actor=actor,
                amount="100.00",
                card_token="tok_visa",
                idempotency_key="dep-1",
                gateway=gateway,
                public_url="",
                bus=KeptEvents(),
            )
        assert refused.value.code == ErrorCode.PAYMENT_GATEWAY_ERROR
        assert "refunded" in refused.value.message
        assert list(gateway.refunded.values()) == [10_000]
        assert await LedgerEntry.filter(account_id=actor.account_id).count() == 0
        assert (await Account.get(id=actor.require_account())).balance == 0
        # the key is free again: the retry deposits once
        assert not await IdempotencyRecord.filter(account_id=actor.account_id, key="dep-1").exists()

    async def test_a_card_order_is_refunded_and_nothing_is_ordered(
        self, db: None, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        actor = await partner_admin()
        gateway = SandboxGateway()
        monkeypatch.setattr(orders, "_commit", failing())  # the commit itself fails
        with pytest.raises(DomainError) as refused:
            await orders.place_order(
                actor=actor,
                request=OrderRequest(lines=[LINE], card_token="tok_visa", idempotency_key="ord-1"),
                gateway=gateway,
                cipher=CodeCipher(settings.code_key),
                public_url="",
                bus=KeptEvents(),
            )
        assert refused.value.code == ErrorCode.PAYMENT_GATEWAY_ERROR
        assert "Nothing was ordered" in refused.value.message
        assert len(gateway.refunded) == 1
        assert await VoucherOrder.filter(account_id=actor.account_id).count() == 0
