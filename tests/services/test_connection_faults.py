"""The database connection killed inside a purchase, then the purchase retried with its key (PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

from models import (
    Account,
    IdempotencyRecord,
    LedgerEntry,
    LedgerEntryKind,
    PaymentMethod,
    Voucher,
    VoucherOrder,
)
from services import ledger, orders
from services.actors import Actor
from services.catalogue import LineRequest
from services.codes import CodeCipher
from services.errors import DomainError
from services.events import KeptEvents
from services.payments import SandboxGateway
from tests.support.factories import balance_partner

pytestmark = pytest.mark.postgres

FUNDS = 100_000


async def purchase(actor: Actor, key: str) -> VoucherOrder:
    request = orders.OrderRequest(
        lines=[LineRequest("BASIC_OV", 3, 1, 1, 0)], payment_method=PaymentMethod.ACCOUNT_BALANCE, idempotency_key=key
    )
    return await orders.place_order(
        actor=actor,
        request=request,
        gateway=SandboxGateway(),
        cipher=CodeCipher(b"6" * 32),
        public_url="http://x",
        bus=KeptEvents(),
    )


class TestKilledConnection:
    async def test_the_first_attempt_leaves_nothing_and_the_retry_succeeds_once(
        self, db: None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # given: a funded partner, and a purchase whose connection the server terminates
        # after the debit, while the vouchers are being written (inside its transaction)
        actor = await balance_partner(funds=FUNDS)
        account_id = actor.require_account()
        real_insert = orders.insert_vouchers
        killed: list[int] = []

        async def insert_then_die(conn: Any, *args: Any, **kwargs: Any) -> Any:
            if not killed:
                killed.append(1)
                await conn.execute_query("SELECT pg_terminate_backend(pg_backend_pid())")
            return await real_insert(conn, *args, **kwargs)

        monkeypatch.setattr(orders, "insert_vouchers", insert_then_die)
        # when
        with pytest.raises(Exception) as failed:  # noqa: PT011  # whatever the driver raises for a killed connection
            await purchase(actor, "f06-key")
        # then: an internal error, not a refusal, and nothing of it is left
        assert killed
        assert not isinstance(failed.value, DomainError)
        assert await VoucherOrder.filter(account_id=account_id).count() == 0
        assert await Voucher.filter(account_id=account_id).count() == 0
        assert await LedgerEntry.filter(account_id=account_id, kind=LedgerEntryKind.PURCHASE).count() == 0
        assert (await Account.get(id=account_id)).balance == FUNDS
        assert not await IdempotencyRecord.filter(account_id=account_id, key="f06-key").exists()
        # when: the client retries with the same key, twice
        order = await purchase(actor, "f06-key")
        again = await purchase(actor, "f06-key")
        # then: one order, one debit, the ledger in balance
        assert again.id == order.id
        assert await VoucherOrder.filter(account_id=account_id).count() == 1
        assert await Voucher.filter(order_id=order.id).count() == 3
        debits = await LedgerEntry.filter(account_id=account_id, kind=LedgerEntryKind.PURCHASE)
        assert [e.amount for e in debits] == [-order.total]
        assert (await Account.get(id=account_id)).balance == FUNDS - order.total
        assert account_id not in [m.account_id for m in await ledger.verify()]
