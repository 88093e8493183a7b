"""Cancelling a whole order, with a full refund to the original payment method.

An order can be cancelled if and only if it was placed no more than 30 days ago,
none of its codes has ever been redeemed, and none of its vouchers has expired.

LOCK ORDER (redemption must follow it): a transaction that changes an order's
vouchers first locks the order row (`SELECT … FOR UPDATE` on voucher_order),
then changes vouchers, then the account row (the balance UPDATE in
services.ledger). Cancel and redeem both take the order row first, so on
PostgreSQL one waits for the other and sees its result: they can never both win
(a redemption checks the order is still ACTIVE after taking the lock; a cancel
cancels only vouchers still VALID_UNUSED and never redeemed, and refuses when
that is not all of them). On SQLite, transactions run one at a time anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q

from infra import clock
from models import (
    Account,
    LedgerEntryKind,
    OrderEvent,
    OrderEventKind,
    PaymentMethod,
    Role,
    Voucher,
    VoucherOrder,
    VoucherOrderStatus,
    VoucherStatus,
    WebhookEventType,
)
from services import events, idempotency, outbox, webhook_events
from services.actors import Actor
from services.errors import DomainError, ErrorCode, not_found
from services.events import EventBus
from services.ledger import finance_contacts, post_entry
from services.mail import SEND_EMAIL, email_payload
from services.money import to_decimal
from services.payments import PaymentGateway

CANCEL_WINDOW = timedelta(days=30)
ORDER_CANCELLED = "order_cancelled"


@dataclass(frozen=True)
class Blocker:
    code: ErrorCode
    message: str


ALREADY_CANCELLED = Blocker(ErrorCode.ORDER_ALREADY_CANCELLED, "The order is already cancelled.")
WINDOW_CLOSED = Blocker(ErrorCode.CANCEL_WINDOW_CLOSED, "Orders can be cancelled up to 30 days after they were placed.")
REDEEMED = Blocker(ErrorCode.ORDER_HAS_REDEEMED_VOUCHERS, "A code of this order has been redeemed.")
EXPIRED = Blocker(ErrorCode.ORDER_HAS_EXPIRED_VOUCHERS, "A voucher of this order has expired.")


class OrderFacts(NamedTuple):
    """What the cancellation rules read of an order itself."""

    id: int
    status: VoucherOrderStatus
    created_at: datetime


def blockers_of(order: OrderFacts, *, redeemed: bool, expired: bool, now: datetime) -> list[Blocker]:
    """Why an order cannot be cancelled now (empty: it can), given whether a code of it was ever
    redeemed and whether a voucher of it has expired."""
    found = []
    if order.status == VoucherOrderStatus.CANCELLED:
        found.append(ALREADY_CANCELLED)
    if order.created_at < now - CANCEL_WINDOW:
        found.append(WINDOW_CLOSED)
    if redeemed:
        found.append(REDEEMED)
    if expired:
        found.append(EXPIRED)
    return found


async def blockers(
    orders: Sequence[OrderFacts], now: datetime, conn: BaseDBAsyncClient | None = None
) -> dict[int, list[Blocker]]:
    """Why each order cannot be cancelled now (empty: it can), for many orders in two statements."""
    ids = [o.id for o in orders]
    redeemed: set[int] = set()
    expired: set[int] = set()
    if ids:
        # Redeemed once is enough, even if released since: used_at is never cleared.
        redeemed = _ints(
            await Voucher.filter(order_id__in=ids, used_at__not_isnull=True)
            .using_db(conn)
            .distinct()
            .values_list("order_id", flat=True)
        )
        expired = _ints(
            await Voucher.filter(
                Q(status=VoucherStatus.EXPIRED) | Q(status=VoucherStatus.VALID_UNUSED, expires_at__lte=now),
                order_id__in=ids,
            )
            .using_db(conn)
            .distinct()
            .values_list("order_id", flat=True)
        )
    return {o.id: blockers_of(o, redeemed=o.id in redeemed, expired=o.id in expired, now=now) for o in orders}


def _ints(values: Iterable[Any]) -> set[int]:
    return {int(v) for v in values}


async def cancel_order(
    *,
    actor: Actor,
    order_id: int,
    idempotency_key: str | None,
    gateway: PaymentGateway,
    public_url: str,
    bus: EventBus,
) -> VoucherOrder:
    """ADMIN/FINANCE cancel a whole order: every code cancelled, the full amount refunded, once."""
    actor.require_role(Role.ADMIN, Role.FINANCE)
    account_id = actor.require_account()
    if not await VoucherOrder.filter(id=order_id, account_id=account_id).exists():
        raise not_found("order_id", "No such order.")

    async def effect(conn: BaseDBAsyncClient) -> idempotency.Response:
        # The order row first: see LOCK ORDER above.
        order = await VoucherOrder.filter(id=order_id, account_id=account_id).using_db(conn).select_for_update().get()
        now = clock.now()
        found = (await blockers([OrderFacts(order.id, order.status, order.created_at)], now, conn))[order.id]
        if found:
            raise DomainError(found[0].code, found[0].message, "order_id")
        changed = (
            await VoucherOrder.filter(id=order.id, status=VoucherOrderStatus.ACTIVE)
            .using_db(conn)
            .update(status=VoucherOrderStatus.CANCELLED, cancelled_at=now)
        )
        if not changed:
            raise DomainError(ALREADY_CANCELLED.code, ALREADY_CANCELLED.message, "order_id")
        cancelled = (
            await Voucher.filter(order_id=order.id, status=VoucherStatus.VALID_UNUSED, used_at=None, expires_at__gt=now)
            .using_db(conn)
            .update(status=VoucherStatus.CANCELLED)
        )
        if cancelled != order.voucher_count:
            raise DomainError(REDEEMED.code, REDEEMED.message, "order_id")
        actor_ids = {"actor_user_id": actor.user_id, "actor_api_key_id": actor.api_key_id}
        await OrderEvent.create(
            order_id=order.id, kind=OrderEventKind.CANCELLED, data={"vouchers": cancelled}, using_db=conn, **actor_ids
        )
        refund = await _refund(conn, order, actor, gateway, public_url)
        await OrderEvent.create(
            order_id=order.id, kind=OrderEventKind.REFUNDED, data=refund, using_db=conn, **actor_ids
        )
        refunded = {"amount": webhook_events.money(order.total, order.currency), "paymentMethod": refund["method"]}
        await webhook_events.emit_for_order(
            conn,
            order.id,
            WebhookEventType.VOUCHER_ORDER_CANCELLED,
            {"refund": refunded, "vouchersCancelled": cancelled, "cancelledAt": webhook_events.instant(now)},
            full=True,
        )
        await _notify(conn, order, public_url)
        return {"order_id": order.id}

    await idempotency.once(
        account_id=account_id,
        key=idempotency.clean_key(idempotency_key),
        operation="voucherOrderCancel",
        request={"order_id": order_id},
        effect=effect,
    )
    outbox.notify()
    await events.publish(
        bus, [events.order_changed(order_id, account_id, "CANCELLED"), events.account_changed(account_id, "REFUNDED")]
    )
    return await VoucherOrder.get(id=order_id)


async def _refund(
    conn: BaseDBAsyncClient, order: VoucherOrder, actor: Actor, gateway: PaymentGateway, public_url: str
) -> dict[str, object]:
    amount = str(to_decimal(order.total, order.currency))
    if order.payment_method == PaymentMethod.ACCOUNT_BALANCE:
        entry = await post_entry(
            conn,
            account_id=order.account_id,
            kind=LedgerEntryKind.REFUND,
            amount=order.total,
            memo=f"Cancelled voucher order {order.number}",
            actor=actor,
            order_id=order.id,
            public_url=public_url,
        )
        return {"method": order.payment_method.value, "amount": amount, "ledgerEntryId": entry.id}
    # Inside the transaction, under the order lock, with a key of the order's own: if the
    # commit fails after the refund, a retry refunds under the same key, so only once.
    refund = await gateway.refund(
        charge_reference=order.gateway_charge_reference or "",
        amount=order.total,
        idempotency_key=f"order-{order.id}-refund",
    )
    await VoucherOrder.filter(id=order.id).using_db(conn).update(gateway_refund_reference=refund.reference)
    return {"method": order.payment_method.value, "amount": amount, "reference": refund.reference}


async def _notify(conn: BaseDBAsyncClient, order: VoucherOrder, public_url: str) -> None:
    account = await Account.get(id=order.account_id, using_db=conn)
    recipients = await finance_contacts(conn, account.id)
    if not recipients:
        return
    await outbox.add(
        SEND_EMAIL,
        email_payload(
            ORDER_CANCELLED,
            to=recipients,
            locale=account.locale,
            context={
                "account_name": account.name,
                "number": order.number,
                "vouchers": order.voucher_count,
                "total": f"{to_decimal(order.total, order.currency)} {order.currency}",
                "payment_method": order.payment_method.value,
            },
        ),
        using_db=conn,
    )
