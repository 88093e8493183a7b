"""Paying by card: charge first, outside any transaction, then commit; refund when the commit fails.

Deposits and card orders both take this path. The charge's idempotency key is the
request's own (`idempotency.Begun`), so a retried request charges once at the gateway.
A refused charge abandons the request's idempotency record and is the client's error as
the gateway words it; a commit that fails after the charge gives the money back and says
so, and nothing of the request is left. When the database went away under the commit, the
money goes back only once the request's record shows the commit did not happen (the answer is
then SERVICE_UNAVAILABLE); otherwise the error is the outage's, and the retry with the same key
replays or resumes the request. One that no retry resumes is listed for an operator
(`idempotency.unresolved`, `vouchsafe payments unresolved`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from infra.faults import RETRY_AFTER_SECONDS, is_unavailable
from services import idempotency
from services.errors import DomainError, ErrorCode, unavailable
from services.payments import Charge, PaymentGateway

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class CardPayment:
    gateway: PaymentGateway
    account_id: int
    currency: str
    amount: int  # minor units
    token: str
    what: str  # "deposit", "order": the charge's description and the words of a failure
    undone: str  # what the client is told did not happen: "Nothing was ordered."


async def charge_then_commit(
    payment: CardPayment,
    begun: idempotency.Begun,
    commit: Callable[[BaseDBAsyncClient, Charge], Awaitable[T]],
    recorded: Callable[[T], dict[str, Any]],
) -> T:
    """Charge the card, then run `commit` in one transaction with the idempotency record's completion."""
    if begun.record_id is not None:
        gateway_key = idempotency.gateway_key(payment.account_id, begun.record_id)
    else:
        gateway_key = f"{payment.account_id}:{payment.what}-{secrets.token_hex(12)}"
    try:
        charge = await payment.gateway.charge(
            amount=payment.amount,
            currency=payment.currency,
            token=payment.token,
            idempotency_key=gateway_key,
            description=f"vouchsafe {payment.what}, account {payment.account_id}",
        )
    except DomainError:
        await idempotency.abandon(begun)
        raise
    try:
        async with in_transaction() as conn:
            result = await commit(conn, charge)
            await idempotency.complete(begun, recorded(result), using_db=conn)
    except Exception as exc:
        if is_unavailable(exc) and not await _known_not_committed(begun):
            # The database went away, perhaps during COMMIT: no refund of what may be committed. The
            # retry with the same key replays it, or resumes it (same gateway key: the same charge).
            log.warning(
                "%s of account %s: database lost after charge %s", payment.what, payment.account_id, charge.reference
            )
            raise
        log.exception(
            "%s of account %s failed after charge %s; refunding", payment.what, payment.account_id, charge.reference
        )
        await payment.gateway.refund(
            charge_reference=charge.reference, amount=charge.amount, idempotency_key=f"refund-{charge.reference}"
        )
        await idempotency.abandon(begun)
        if is_unavailable(exc):
            raise unavailable(
                f"The database is not reachable; the card charge was refunded. {payment.undone} Try again.",
                RETRY_AFTER_SECONDS,
            ) from exc
        raise DomainError(
            ErrorCode.PAYMENT_GATEWAY_ERROR,
            f"The {payment.what} could not be completed; the card charge was refunded. {payment.undone}",
        ) from exc
    return result


async def _known_not_committed(begun: idempotency.Begun) -> bool:
    """The request's record says its transaction did not commit; False when the database cannot tell."""
    try:
        return await idempotency.left_open(begun)
    except Exception as exc:  # the database is still gone: nothing known, nothing refunded
        log.warning("could not read idempotency record %s (%s)", begun.record_id, type(exc).__name__)
        return False
