"""Voucher expiry: the periodic sweep that marks due vouchers EXPIRED, and the reminder before it.

A voucher reads EXPIRED the moment it is due (services.order_reads.effective_status),
so the sweep is housekeeping: it makes the stored status catch up and writes the
order history. It walks voucher ids in ranges, one short transaction per range
(two ranges at a time on PostgreSQL), so no statement holds locks for long and
redemptions keep working meanwhile.

Each range follows the LOCK ORDER of services.cancellation: the affected order
rows first (in id order), then the vouchers. Its UPDATE is the compare-and-set
(status = 'VALID_UNUSED' AND expires_at <= now): a redemption at the boundary
locks the order row, then sets VALID_UNUSED -> VALID_USED only while
expires_at > now, so exactly one of them wins, and a second sweep finds nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.functions import Count, Max, Min
from tortoise.transactions import in_transaction

from infra import clock
from models import (
    Account,
    OrderEvent,
    OrderEventKind,
    Voucher,
    VoucherOrder,
    VoucherOrderStatus,
    VoucherStatus,
)
from services import events, outbox, webhook_events
from services.events import EventBus
from services.ledger import finance_contacts
from services.mail import SEND_EMAIL, email_payload

log = logging.getLogger(__name__)

REMINDER_WINDOW = timedelta(days=30)
# A redemption that meets the range being swept waits for that range's transaction (the
# order lock): short ranges keep that wait small at no cost in all, and two lanes on
# PostgreSQL (each taking the next range when its last one ends) bring the sweep near one
# set-based UPDATE's time (the figures: bench/README.md, W6). Two lanes never deadlock: their
# vouchers are disjoint and each locks its orders in id order. SQLite writes one
# transaction at a time: one lane there.
BATCH_SIZE = 1_250
SWEEP_LANES = 2
EXPIRY_REMINDER = "expiry_reminder"
_DATE_FORMATS = {"en": "%Y-%m-%d", "de": "%d.%m.%Y", "fr": "%d/%m/%Y"}

# PostgreSQL: one statement a range, its own transaction (no BEGIN or COMMIT round trips).
# `locked` locks the orders of the range's due vouchers in id order (so sweeps never
# deadlock with each other), found by primary key; FOR NO KEY UPDATE conflicts with the
# order lock of a cancel or a redemption, not with rows that merely reference the order.
# The UPDATE joins `locked`, so no voucher changes before its order is locked. It is the
# compare-and-set: after waiting for an order, READ COMMITTED re-checks each voucher's
# newest version, so a redemption that committed meanwhile wins. One history event per
# order, and the counts per order come back, without shipping voucher rows to Python.
_EXPIRE_PG = """
WITH locked AS MATERIALIZED (
    SELECT id, account_id FROM voucher_order
    WHERE id = ANY(ARRAY(
        SELECT DISTINCT order_id FROM voucher
        WHERE id >= $1 AND id < $2 AND status = 'VALID_UNUSED' AND expires_at <= $3
    ))
    ORDER BY id
    FOR NO KEY UPDATE
), expired AS (
    UPDATE voucher AS v SET status = 'EXPIRED'
    FROM locked
    WHERE v.order_id = locked.id
      AND v.id >= $1 AND v.id < $2 AND v.status = 'VALID_UNUSED' AND v.expires_at <= $3
    RETURNING v.order_id
), per_order AS (
    SELECT order_id, COUNT(*) AS n FROM expired GROUP BY order_id
), history AS (
    INSERT INTO order_event (order_id, kind, data, created_at)
    SELECT order_id, 'EXPIRED', jsonb_build_object('count', n), $4 FROM per_order ORDER BY order_id
), tally AS (
    INSERT INTO webhook_expiry_tally (sweep_id, order_id, account_id, count, created_at)
    SELECT $5, p.order_id, l.account_id, p.n, $4 FROM per_order AS p JOIN locked AS l ON l.id = p.order_id
    WHERE EXISTS (SELECT 1 FROM webhook_endpoint w WHERE w.account_id = l.account_id AND w.enabled
                  AND w.events @> '["VOUCHERS_EXPIRED"]'::jsonb)
)
SELECT p.order_id, l.account_id, p.n FROM per_order AS p JOIN locked AS l ON l.id = p.order_id
"""
# SQLite: transactions are serial and take the write lock as they begin
# (infra.sqlite_backend), so the UPDATE needs no order lock before it.
_EXPIRE_SQLITE = """
UPDATE voucher SET status = 'EXPIRED'
WHERE id >= ? AND id < ? AND status = 'VALID_UNUSED' AND expires_at <= ?
RETURNING order_id, account_id
"""


async def expire_due(*, bus: EventBus, batch_size: int = BATCH_SIZE, now: datetime | None = None) -> int:
    """Mark every unused voucher past its expiry EXPIRED, range by range; one EXPIRED event per order and range."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    now = now or clock.now()
    await webhook_events.flush_expiry_tallies()  # a sweep that died before its events
    bounds = (
        await Voucher.filter(status=VoucherStatus.VALID_UNUSED, expires_at__lte=now)
        .annotate(low=Min("id"), high=Max("id"))
        .values("low", "high")
    )
    if not bounds or bounds[0]["low"] is None:
        return 0
    low, high = int(bounds[0]["low"]), int(bounds[0]["high"])
    ranges = iter(range(low, high + 1, batch_size))
    # vouchers.expired webhooks: tallied with each range, one event per order when the sweep ends.
    sweep = webhook_events.new_sweep_id()

    async def lane() -> int:
        # The lanes share one iterator: each takes the next range when its last one ends.
        return sum([await _expire_range(start, start + batch_size, now, sweep, bus) for start in ranges])

    lanes = SWEEP_LANES if connections.get("default").capabilities.dialect == "postgres" else 1
    # A task group: a lane that fails stops the other; the error reaches the caller in an ExceptionGroup.
    async with asyncio.TaskGroup() as group:
        swept = [group.create_task(lane()) for _ in range(lanes)]
    expired = sum(task.result() for task in swept)
    await webhook_events.flush_expiry_tallies(sweep_id=sweep)
    if expired:
        log.info("expired %d vouchers", expired)
    return expired


async def _expire_range(start: int, stop: int, now: datetime, sweep: str, bus: EventBus) -> int:
    """One short transaction: the due vouchers with start <= id < stop, and their orders' history."""
    conn = connections.get("default")
    if conn.capabilities.dialect == "postgres":
        rows = await conn.execute_query_dict(_EXPIRE_PG, [start, stop, now, clock.now(), sweep])
        per_order = Counter({int(row["order_id"]): int(row["n"]) for row in rows})
        owners = {int(row["order_id"]): int(row["account_id"]) for row in rows}
    else:
        async with in_transaction() as tx:
            rows = await tx.execute_query_dict(_EXPIRE_SQLITE, [start, stop, str(now)])
            per_order = Counter(int(row["order_id"]) for row in rows)
            owners = {int(row["order_id"]): int(row["account_id"]) for row in rows}
            if per_order:
                await _history(tx, per_order)
                tallies = {order_id: (owners[order_id], count) for order_id, count in per_order.items()}
                await webhook_events.tally_expired(tx, sweep, tallies)
    await events.publish(bus, (events.order_changed(order_id, owner, "EXPIRED") for order_id, owner in owners.items()))
    return sum(per_order.values())


async def _history(conn: BaseDBAsyncClient, per_order: Counter[int]) -> None:
    created_at = clock.now()
    await OrderEvent.bulk_create(
        [
            OrderEvent(order_id=order_id, kind=OrderEventKind.EXPIRED, data={"count": count}, created_at=created_at)
            for order_id, count in sorted(per_order.items())
        ],
        batch_size=1_000,
        using_db=conn,
    )


class _NothingToRemind(Exception):
    """Rolls back a claimed reminder whose vouchers were all used or expired meanwhile."""


async def send_expiry_reminders(*, public_url: str, now: datetime | None = None) -> int:
    """Once per active order, e-mail its finance contacts that unused vouchers expire within 30 days."""
    now = now or clock.now()
    horizon = now + REMINDER_WINDOW
    candidates: list[Any] = await (
        Voucher.filter(
            status=VoucherStatus.VALID_UNUSED,
            expires_at__gt=now,
            expires_at__lte=horizon,
            order__status=VoucherOrderStatus.ACTIVE,
            order__expiry_reminder_sent_at__isnull=True,
        )
        .distinct()
        .values_list("order_id", flat=True)
    )
    sent = 0
    for order_id in sorted({int(c) for c in candidates}):
        try:
            async with in_transaction() as conn:
                sent += await _remind(conn, order_id, now, horizon, public_url)
        except _NothingToRemind:
            continue
    if sent:
        outbox.notify()
        log.info("sent %d expiry reminders", sent)
    return sent


async def _remind(conn: BaseDBAsyncClient, order_id: int, now: datetime, horizon: datetime, public_url: str) -> int:
    # The claim is the compare-and-set, and the first statement: of two concurrent
    # runs, one claims the order, the other changes nothing and sends nothing.
    claimed = (
        await VoucherOrder.filter(id=order_id, status=VoucherOrderStatus.ACTIVE, expiry_reminder_sent_at=None)
        .using_db(conn)
        .update(expiry_reminder_sent_at=now)
    )
    if not claimed:
        return 0
    soon = (
        await Voucher.filter(
            order_id=order_id, status=VoucherStatus.VALID_UNUSED, expires_at__gt=now, expires_at__lte=horizon
        )
        .using_db(conn)
        .annotate(n=Count("id"), first=Min("expires_at"))
        .values("n", "first")
    )
    count = int(soon[0]["n"]) if soon else 0
    if not count:
        raise _NothingToRemind
    first = Voucher._meta.fields_map["expires_at"].to_python_value(soon[0]["first"])
    order = await VoucherOrder.get(id=order_id, using_db=conn)
    account = await Account.get(id=order.account_id, using_db=conn)
    recipients = await finance_contacts(conn, account.id)
    if recipients:
        locale = account.locale
        await outbox.add(
            SEND_EMAIL,
            email_payload(
                EXPIRY_REMINDER,
                to=recipients,
                locale=locale,
                context={
                    "account_name": account.name,
                    "number": order.number,
                    "customer_name": order.customer_name or "",
                    "vouchers": count,
                    "expires_on": f"{first:{_DATE_FORMATS.get(locale, _DATE_FORMATS['en'])}}",
                    "link": f"{public_url}/orders/{order.number}",
                },
            ),
            using_db=conn,
        )
    return 1
