"""Webhook events: what each carries, and how it is written with the change that causes it.

`emit` runs on the caller's connection, inside the transaction of the change: one
delivery row per enabled endpoint of the owning account subscribed to the event's type,
all with the same event id (the `webhook-id` header) and the exact body to send. The
workers send them (services.webhook_delivery). Nothing commits without its deliveries,
and no delivery exists for a change that rolled back.

A payload is `{"type", "timestamp", "data"}`. `data` holds global ids the API accepts,
the order number, amounts as `{"amount": "125.00", "currencyCode": "USD"}` and the
voucher's masked code: never a full code, never anything of another tenant (a redeemed
voucher's payload names neither the redeeming account nor its certificate request).
"""

from __future__ import annotations

import base64
import json
import secrets
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from infra import clock
from models import (
    Voucher,
    VoucherOrder,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEventType,
    WebhookExpiryTally,
)
from services.catalogue import Quote
from services.codes import masked
from services.money import to_decimal

WIRE_NAMES: dict[WebhookEventType, str] = {
    WebhookEventType.VOUCHER_ORDER_PLACED: "voucher_order.placed",
    WebhookEventType.VOUCHER_ORDER_PDF_READY: "voucher_order.pdf_ready",
    WebhookEventType.VOUCHER_ORDER_CANCELLED: "voucher_order.cancelled",
    WebhookEventType.VOUCHER_REDEEMED: "voucher.redeemed",
    WebhookEventType.VOUCHER_RELEASED: "voucher.released",
    WebhookEventType.VOUCHERS_EXPIRED: "vouchers.expired",
    WebhookEventType.DEPOSIT_SUCCEEDED: "deposit.succeeded",
    WebhookEventType.BALANCE_LOW: "balance.low",
}
TEST = "webhook.test"


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(16)


def gid(type_name: str, pk: int) -> str:
    """The global id the API gives the object (schema.common.global_id): `node(id:)` finds it."""
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()


def money(minor: int, currency: str) -> dict[str, str]:
    return {"amount": str(to_decimal(minor, currency)), "currencyCode": currency}


def instant(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, to the millisecond."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def order_ref(order: VoucherOrder) -> dict[str, Any]:
    return {"id": gid("VoucherOrder", order.id), "number": order.number}


def order_data(order: VoucherOrder) -> dict[str, Any]:
    return {
        **order_ref(order),
        "status": order.status.value,
        "customerName": order.customer_name,
        "notes": order.notes,
        "paymentMethod": order.payment_method.value,
        "total": money(order.total, order.currency),
        "voucherCount": order.voucher_count,
        "createdAt": instant(order.created_at),
    }


def placed_order(order: VoucherOrder, quote: Quote) -> dict[str, Any]:
    """voucher_order.placed's order: as placed, with its priced lines."""
    lines = [
        {
            "productCode": line.product.code,
            "productName": line.product.name,
            "quantity": line.quantity,
            "validityYears": line.validity_years,
            "fqdns": line.fqdns,
            "wildcards": line.wildcards,
            "unitPrice": money(line.unit_price, order.currency),
            "linePrice": money(line.line_total, order.currency),
        }
        for line in quote.lines
    ]
    return {**order_data(order), "lines": lines}


def voucher_ref(voucher_id: int, hint: str, status: str) -> dict[str, Any]:
    return {"id": gid("Voucher", voucher_id), "maskedCode": masked(hint), "status": status}


async def voucher_redeemed(conn: BaseDBAsyncClient, order: VoucherOrder, voucher: Voucher, at: datetime) -> int:
    """voucher.redeemed (the PostgreSQL redemption writes the same in SQL: REDEEMED_PG)."""
    line = voucher.line
    data = {
        "order": order_ref(order),
        "voucher": {
            **voucher_ref(voucher.id, voucher.code_hint, "VALID_USED"),
            "productCode": line.product_code,
            "validityYears": line.validity_years,
        },
        "redeemedAt": instant(at),
    }
    return await emit(conn, account_id=order.account_id, event=WebhookEventType.VOUCHER_REDEEMED, data=data, at=at)


# voucher.redeemed as `voucher_redeemed` writes it, for the PostgreSQL redemption's one statement
# (services.redemption._REDEEM_PG): a CTE that writes it for the owner's subscribed endpoints
# from the redeemed voucher `f` (with its line and order number) and the update `v`; $2 is
# the time, $12 the event id, $13 the time in ISO 8601, $14 the mask before the code's hint.
REDEEMED_PG = """w AS (
    INSERT INTO webhook_delivery
        (endpoint_id, account_id, event_id, event_type, payload, status, attempts, next_attempt_at, created_at)
    SELECT ep.id, ep.account_id, $12, 'voucher.redeemed', json_build_object(
        'type', 'voucher.redeemed', 'timestamp', $13::text, 'data', json_build_object(
            'account', json_build_object('id', encode(convert_to('Account:' || ep.account_id, 'UTF8'), 'base64')),
            'order', json_build_object(
                'id', encode(convert_to('VoucherOrder:' || f.order_id, 'UTF8'), 'base64'), 'number', f.order_number),
            'voucher', json_build_object(
                'id', encode(convert_to('Voucher:' || f.id, 'UTF8'), 'base64'), 'maskedCode', $14::text || f.code_hint,
                'status', 'VALID_USED', 'productCode', f.product_code, 'validityYears', f.validity_years),
            'redeemedAt', $13::text))::text, 'PENDING', 0, $2, $2
    FROM v, f, webhook_endpoint ep
    WHERE ep.account_id = f.account_id AND ep.enabled AND ep.events @> '["VOUCHER_REDEEMED"]'::jsonb
)"""


async def voucher_released(
    conn: BaseDBAsyncClient, order: VoucherOrder, voucher: Voucher, revoke: bool, at: datetime
) -> int:
    data = {
        "order": order_ref(order),
        "voucher": voucher_ref(voucher.id, voucher.code_hint, "VALID_UNUSED"),
        "reason": "CERTIFICATE_REVOKED" if revoke else "CERTIFICATE_REQUEST_CANCELLED",
        "releasedAt": instant(at),
    }
    return await emit(conn, account_id=order.account_id, event=WebhookEventType.VOUCHER_RELEASED, data=data, at=at)


def body(wire_type: str, data: dict[str, Any], at: datetime) -> str:
    """The exact JSON sent, every attempt alike."""
    return json.dumps(
        {"type": wire_type, "timestamp": instant(at), "data": data}, ensure_ascii=False, separators=(",", ":")
    )


async def subscribers(conn: BaseDBAsyncClient, account_id: int, event: WebhookEventType) -> list[int]:
    """The account's enabled endpoints subscribed to the event's type (an account has a handful)."""
    rows = await WebhookEndpoint.filter(account_id=account_id, enabled=True).using_db(conn).values_list("id", "events")
    return [int(endpoint_id) for endpoint_id, events in rows if event.value in (events or [])]


async def emit(
    conn: BaseDBAsyncClient,
    *,
    account_id: int,
    event: WebhookEventType,
    data: dict[str, Any],
    at: datetime | None = None,
) -> int:
    """Write the event for every subscribed endpoint, in the caller's transaction; how many were written."""
    endpoints = await subscribers(conn, account_id, event)
    if not endpoints:
        return 0
    now = clock.now()
    text = body(WIRE_NAMES[event], {"account": {"id": gid("Account", account_id)}, **data}, at or now)
    event_id = new_event_id()
    await WebhookDelivery.bulk_create(
        [
            WebhookDelivery(
                endpoint_id=endpoint_id,
                account_id=account_id,
                event_id=event_id,
                event_type=WIRE_NAMES[event],
                payload=text,
                status=WebhookDeliveryStatus.PENDING,
                next_attempt_at=now,
                created_at=now,
            )
            for endpoint_id in endpoints
        ],
        using_db=conn,
    )
    return len(endpoints)


async def emit_for_order(
    conn: BaseDBAsyncClient, order_id: int, event: WebhookEventType, extra: dict[str, Any], *, full: bool = False
) -> int:
    """An order's event, the order read on the caller's connection (its owner, number and state)."""
    order = await VoucherOrder.get(id=order_id, using_db=conn)
    reference = order_data(order) if full else order_ref(order)
    return await emit(conn, account_id=order.account_id, event=event, data={"order": reference, **extra})


# Tallies this old belong to a sweep that died before it turned them into events.
ABANDONED_TALLY_AGE = timedelta(minutes=10)


def new_sweep_id() -> str:
    return "sweep_" + secrets.token_hex(8)


async def tally_expired(conn: BaseDBAsyncClient, sweep_id: str, expired: dict[int, tuple[int, int]]) -> None:
    """In an expiry range's transaction: {order id: (account id, count)}, for subscribed accounts only."""
    now = clock.now()
    subscribed = {
        a for a in {a for a, _ in expired.values()} if await subscribers(conn, a, WebhookEventType.VOUCHERS_EXPIRED)
    }
    await WebhookExpiryTally.bulk_create(
        [
            WebhookExpiryTally(sweep_id=sweep_id, order_id=order_id, account_id=account, count=count, created_at=now)
            for order_id, (account, count) in sorted(expired.items())
            if account in subscribed
        ],
        using_db=conn,
    )


class _Taken(Exception):
    """Another flush turned these tallies into their event first."""


async def flush_expiry_tallies(*, sweep_id: str | None = None) -> int:
    """One vouchers.expired event per order and sweep, from its tallies (a sweep's own, or abandoned ones)."""
    query = WebhookExpiryTally.all()
    if sweep_id is not None:
        query = query.filter(sweep_id=sweep_id)
    else:
        query = query.filter(created_at__lt=clock.now() - ABANDONED_TALLY_AGE)
    groups: dict[tuple[str, int], list[WebhookExpiryTally]] = defaultdict(list)
    for tally in await query.order_by("id"):
        groups[(tally.sweep_id, tally.order_id)].append(tally)
    emitted = 0
    for tallies in groups.values():
        try:
            async with in_transaction() as conn:
                ids = [t.id for t in tallies]
                if await WebhookExpiryTally.filter(id__in=ids).using_db(conn).delete() != len(ids):
                    raise _Taken
                expired = {"count": sum(t.count for t in tallies), "expiredAt": instant(tallies[0].created_at)}
                emitted += await emit_for_order(conn, tallies[0].order_id, WebhookEventType.VOUCHERS_EXPIRED, expired)
        except _Taken:
            continue
    return emitted
