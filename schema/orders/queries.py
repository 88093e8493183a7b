"""voucherOrders: the account's orders, and what the document shows of each, in one statement.

The resolver reads ahead in the selection set (schema.lookahead) and asks the page
statement (services.order_page) for exactly the parts the document selects below
`edges.node`: lines, status counts, each distinct `vouchers(...)` and `history(...)`
page, the totals. The orders carry what was read; their fields answer from it
without a statement or a coroutine of their own, and fall back to the per-request
loaders for anything the read-ahead could not know (an argument that fails to
parse is left to the field, which refuses it as before).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.types.nodes import Selection
from strawberry.utils.await_maybe import AwaitableOrValue

from models import VoucherOrderStatus, VoucherStatus
from schema.context import Info
from schema.errors import ClientError
from schema.lookahead import names, selected
from schema.orders.types import VoucherOrder
from schema.pagination import Connection, decode_cursor, page_of, page_size
from schema.permissions import IsAuthenticated
from services import order_page
from services.order_page import EventPage, OrderFilter, OrderRow, Parts, VoucherPage
from services.orders import CUSTOMER_NAME_MAX

NUMBER_MAX = 32  # the column's length

COUNTED_FIELDS = {"statusCounts", "cancellable", "cancelBlockers"}


@strawberry.input
class VoucherOrderFilter:
    status: VoucherOrderStatus | None = None
    customer_name: str | None = strawberry.field(default=None, description="Part of the name, any case.")
    created_after: datetime | None = None
    created_before: datetime | None = None
    number: str | None = strawberry.field(default=None, description="The order's number, exactly.")


def _page_request(arguments: dict[str, Any]) -> tuple[int, int | None] | None:
    """(rows to read, cursor id) of a page argument set, or None when the field itself must refuse it."""
    try:
        # Literals come as their text ("5"), variables as their value.
        first = arguments.get("first")
        size, _ = page_size(int(first) if first is not None else None, None)
        after = arguments.get("after")
        return size + 1, decode_cursor(after) if after else None
    except (ClientError, TypeError, ValueError):
        return None


def _voucher_pages(current: list[Selection]) -> tuple[VoucherPage, ...]:
    pages = []
    for field in selected(current, "edges", "node", "vouchers"):
        request = _page_request(field.arguments)
        status = (field.arguments.get("filter") or {}).get("status")
        if request is None or status not in (None, *VoucherStatus.__members__):
            continue
        pages.append(VoucherPage(*request, VoucherStatus[status] if status else None))
    return tuple(dict.fromkeys(pages))


def _event_pages(current: list[Selection]) -> tuple[EventPage, ...]:
    pages = [_page_request(field.arguments) for field in selected(current, "edges", "node", "history")]
    return tuple(dict.fromkeys(EventPage(*request) for request in pages if request is not None))


def parts(current: list[Selection]) -> Parts:
    """What the document (`info.selected_fields` of voucherOrders) asks of each order of the page."""
    node = names(selected(current, "edges", "node"))
    voucher_totals = "totalCount" in names(selected(current, "edges", "node", "vouchers"))
    return Parts(
        lines="lines" in node,
        counts=bool(node & COUNTED_FIELDS) or voucher_totals,
        vouchers=_voucher_pages(current),
        events=_event_pages(current),
        event_totals="totalCount" in names(selected(current, "edges", "node", "history")),
        total="totalCount" in names(selected(current)),
    )


async def voucher_orders(
    info: Info,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    filter: VoucherOrderFilter | None,
) -> Connection[VoucherOrder]:
    """The signed-in account's orders, newest first."""
    size, backwards = page_size(first, last)
    actor = info.context.actor
    account_id = actor.account_id if actor and actor.account_id else -1
    wanted = OrderFilter()
    if filter is not None:
        if filter.customer_name and len(filter.customer_name) > CUSTOMER_NAME_MAX:
            raise ClientError(f"filter.customerName: at most {CUSTOMER_NAME_MAX} characters.", code="INVALID")
        name = filter.customer_name.strip() if filter.customer_name else None
        number = filter.number.strip().upper() if filter.number is not None else None
        # Both forms: upper-casing can lengthen a string ("ß" is "SS"), and the column holds NUMBER_MAX.
        if filter.number and max(len(filter.number), len(number or "")) > NUMBER_MAX:
            raise ClientError(f"filter.number: at most {NUMBER_MAX} characters.", code="INVALID")
        wanted = OrderFilter(filter.status, name or None, filter.created_after, filter.created_before, number)
    current = info.selected_fields
    requested = parts(current)
    cursors = "cursor" in names(selected(current, "edges", "node", "vouchers", "edges"))
    page = await order_page.order_page(
        account_id=account_id,
        filter=wanted,
        limit=size + 1,
        after_id=decode_cursor(after) if after is not None else None,
        before_id=decode_cursor(before) if before is not None else None,
        backwards=backwards,
        parts=requested,
        now=info.context.loaders.now,
    )
    total = page.total

    def count() -> AwaitableOrValue[int]:
        return total if total is not None else order_page.count_orders(account_id=account_id, filter=wanted)

    def convert(row: OrderRow) -> VoucherOrder:
        return VoucherOrder.of(row, voucher_cursors=cursors)

    return page_of(page.rows, convert, size=size, backwards=backwards, after=after, before=before, count=count)


@strawberry.type
class OrderQuery:
    @strawberry.field(permission_classes=[IsAuthenticated], description="The account's orders, newest first.")
    async def voucher_orders(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: VoucherOrderFilter | None = None,
    ) -> Connection[VoucherOrder]:
        return await voucher_orders(info, first, after, last, before, filter)
