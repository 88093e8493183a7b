"""A card charged, then its request cut off before the commit, and no retry: seen, kept, and settled by an operator.

The request is cut off as a shutdown cuts it: the task is cancelled inside its commit, after
the gateway charged the card. Nothing refunds it then (only a failed commit does), so the
record stays IN_PROGRESS. It must show as unresolved once its lease has long lapsed, with the
key the charge went under. It must survive the purge of expired keys, and a late retry must
resume it under that same key (no second charge). An operator's `resolve` must never
take it from a retry that is running.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from tortoise.backends.base.client import BaseDBAsyncClient

from models import Account, IdempotencyRecord, IdempotencyStatus
from services import health, idempotency
from services.card_payments import CardPayment, charge_then_commit
from services.payments import Charge, SandboxGateway
from tests.support.running import shifted

pytestmark = pytest.mark.usefixtures("db")

REQUEST = {"amount": 5_000, "token": "tok_visa"}
LAPSED = idempotency.LEASE + idempotency.UNRESOLVED_AFTER + timedelta(minutes=1)


async def cut_off(gateway: SandboxGateway, account_id: int, key: str) -> idempotency.Begun:
    """A card deposit charged, then cancelled inside its commit: the state a killed request leaves."""
    begun = await idempotency.begin(account_id=account_id, key=key, operation="fundsDeposit", request=REQUEST)
    payment = CardPayment(gateway, account_id, "EUR", 5_000, "tok_visa", "deposit", "Nothing was deposited.")

    async def commit(conn: BaseDBAsyncClient, charge: Charge) -> dict[str, Any]:
        raise asyncio.CancelledError  # the shutdown's cancellation, inside the transaction

    with pytest.raises(asyncio.CancelledError):
        await charge_then_commit(payment, begun, commit, lambda result: result)
    return begun


async def test_a_cut_off_card_payment_is_listed_kept_and_resolved_once() -> None:
    gateway = SandboxGateway()
    account = await Account.create(name="Limbo")
    begun = await cut_off(gateway, account.id, "deposit-1")
    assert begun.record_id is not None
    key = idempotency.gateway_key(account.id, begun.record_id)
    assert key in gateway._charges  # noqa: SLF001  # the sandbox's own record: the card was charged
    assert not gateway.refunded
    # Within its lease and the grace after it, a retry may still come: not listed yet.
    mine = [row for row in await idempotency.unresolved() if row.account_id == account.id]
    assert mine == []
    with shifted(LAPSED):
        (row,) = [row for row in await idempotency.unresolved() if row.account_id == account.id]
        assert (row.record_id, row.operation, row.gateway_key) == (begun.record_id, "fundsDeposit", key)
        snapshot = await health.measure(None, "q")
        assert snapshot.gauges["vouchsafe_card_payments_unresolved"][1][0][1] >= 1
    # Past the keys' keeping time the purge leaves it for the operator.
    with shifted(idempotency.KEEP + timedelta(hours=1)):
        await idempotency.purge_expired()
        assert await IdempotencyRecord.exists(id=begun.record_id, status=IdempotencyStatus.IN_PROGRESS)
        assert await idempotency.resolve(begun.record_id)
        assert not await idempotency.resolve(begun.record_id)
        assert not [row for row in await idempotency.unresolved() if row.account_id == account.id]


async def test_a_late_retry_resumes_it_under_the_same_key_and_resolve_leaves_it_alone() -> None:
    gateway = SandboxGateway()
    account = await Account.create(name="Limbo retried")
    begun = await cut_off(gateway, account.id, "deposit-2")
    assert begun.record_id is not None
    charged = gateway._charges[idempotency.gateway_key(account.id, begun.record_id)]  # noqa: SLF001
    with shifted(idempotency.KEEP + timedelta(hours=1)):
        # The client comes back a day later with the same key: it takes the request over, not a new one.
        again = await idempotency.begin(
            account_id=account.id, key="deposit-2", operation="fundsDeposit", request=REQUEST
        )
        assert again.record_id == begun.record_id
        assert not await idempotency.resolve(begun.record_id)  # its lease is live: the retry finishes it
        payment = CardPayment(gateway, account.id, "EUR", 5_000, "tok_visa", "deposit", "Nothing was deposited.")

        async def commit(conn: BaseDBAsyncClient, charge: Charge) -> dict[str, Any]:
            return {"charge": charge.reference}

        result = await charge_then_commit(payment, again, commit, lambda result: result)
    assert result == {"charge": charged.reference}  # the same charge: the card was charged once
    assert len(gateway._charges) == 1  # noqa: SLF001
    record = await IdempotencyRecord.get(id=begun.record_id)
    assert record.status == IdempotencyStatus.DONE
