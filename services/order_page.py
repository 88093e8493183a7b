"""A page of an account's orders with what a dashboard shows of each, in one statement.

Read part by part (a statement per kind of data, as the per-field loaders do), a
dashboard of orders × lines × status counts × first vouchers × history costs a
statement for each kind plus the page and its count. Here the caller names the parts
it needs (`Parts`) and one statement returns the page with them: each part is a
correlated subquery on the page's order id, its rows aggregated into a JSON array by
the database (json_agg on PostgreSQL, json_group_array on SQLite), so every part
is an index range read per order and no row is sent twice. JSON arrays carry no
order on SQLite before 3.44: the rows are sorted here.

Statuses are read as of `now`, as everywhere else (services.order_reads): a voucher
past its expiry reads EXPIRED whether or not the expiry job has run. Timestamps
inside the arrays are written in UTC, ISO 8601, by the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import orjson
from tortoise import connections

from infra.sql import Sql
from models import PaymentMethod, PdfStatus, VoucherOrder, VoucherOrderStatus, VoucherStatus
from services.order_reads import EventRow, VoucherRow, status_condition

_STATUS = {status.value: status for status in VoucherStatus}
_FIELDS = VoucherOrder._meta.fields_map
_ORDER_COLUMNS = (
    "id, number, customer_name, notes, status, payment_method, total, currency, created_at, voucher_count,"
    " pdf_status, pdf_error, pdf_generated_at"
)
_time = datetime.fromisoformat


@dataclass(frozen=True)
class VoucherPage:
    """One `vouchers(first, after, filter)` of every order: `limit` rows after a voucher id."""

    limit: int
    after_id: int | None = None
    status: VoucherStatus | None = None


@dataclass(frozen=True)
class EventPage:
    """One `history(first, after)` of every order: `limit` events before an event id, newest first."""

    limit: int
    before_id: int | None = None


@dataclass(frozen=True)
class Parts:
    """What to read with each order of the page."""

    lines: bool = False
    counts: bool = False  # vouchers by status as of now, and whether a code was ever redeemed
    vouchers: tuple[VoucherPage, ...] = ()
    events: tuple[EventPage, ...] = ()
    event_totals: bool = False
    total: bool = False  # how many orders match the filter, over every page


@dataclass(frozen=True)
class OrderFilter:
    status: VoucherOrderStatus | None = None
    customer_name: str | None = None  # part of the name, any case
    created_after: datetime | None = None
    created_before: datetime | None = None
    number: str | None = None  # exactly (the console's /orders/<number>)


@dataclass(frozen=True)
class LineRow:
    position: int
    product_code: str
    product_name: str
    quantity: int
    validity_years: int
    fqdns: int
    wildcards: int
    unit_price: int
    line_total: int


@dataclass
class OrderRow:
    """An order as the page read it; the parts not asked for stay None (or empty)."""

    id: int
    number: str
    customer_name: str | None
    notes: str | None
    status: VoucherOrderStatus
    payment_method: PaymentMethod
    total: int
    currency: str
    created_at: datetime
    voucher_count: int
    pdf_status: PdfStatus
    pdf_error: str | None
    pdf_generated_at: datetime | None
    lines: list[LineRow] | None = None
    counts: dict[VoucherStatus, int] | None = None
    redeemed: bool | None = None
    vouchers: dict[VoucherPage, list[VoucherRow]] = field(default_factory=dict)
    events: dict[EventPage, list[EventRow]] = field(default_factory=dict)
    event_total: int | None = None


@dataclass(frozen=True)
class OrderPage:
    rows: list[OrderRow]  # newest first, or oldest first when read backwards
    total: int | None  # when Parts.total


class _Json:
    """The few JSON and time functions that differ between PostgreSQL and SQLite."""

    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres
        self.array = "json_build_array" if postgres else "json_array"
        self.agg = "json_agg" if postgres else "json_group_array"

    def time(self, column: str) -> str:
        # SQLite holds Tortoise's datetimes as ISO text in UTC already.
        if not self.postgres:
            return column
        return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""

    def embed(self, column: str) -> str:
        # A JSON column as JSON, not as a string holding JSON (SQLite stores it as text).
        return column if self.postgres else f"json({column})"


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _where(sql: Sql, account_id: int, f: OrderFilter) -> str:
    """The tenant's orders matching the filter (Tortoise's icontains: upper-cased LIKE)."""
    where = f"account_id = {sql.param(account_id)}"
    if f.status is not None:
        where += f" AND status = {sql.param(f.status.value)}"
    if f.customer_name:
        pattern = sql.param(f"%{_escape_like(f.customer_name)}%")
        where += f" AND UPPER(CAST(customer_name AS VARCHAR(200))) LIKE UPPER({pattern}) ESCAPE '\\'"
    if f.number is not None:
        where += f" AND number = {sql.param(f.number)}"
    if f.created_after is not None:
        where += f" AND created_at >= {sql.param(_utc(f.created_after))}"
    if f.created_before is not None:
        where += f" AND created_at < {sql.param(_utc(f.created_before))}"
    return where


def _effective(sql: Sql, now: datetime) -> str:
    return f"CASE WHEN status = 'VALID_UNUSED' AND expires_at <= {sql.param(now)} THEN 'EXPIRED' ELSE status END"


def _parts(sql: Sql, js: _Json, parts: Parts, now: datetime) -> list[str]:
    """One correlated subquery per part, on the page's order `p`."""
    columns = []
    if parts.lines:
        line = (
            "position, product_code, product_name, quantity, validity_years, fqdns, wildcards, unit_price, line_total"
        )
        columns.append(
            f"(SELECT {js.agg}({js.array}({line})) FROM voucher_order_line WHERE order_id = p.id) AS part_lines"
        )
    if parts.counts:
        unused = f"status = 'VALID_UNUSED' AND expires_at > {sql.param(now)}"
        expired = f"status = 'EXPIRED' OR (status = 'VALID_UNUSED' AND expires_at <= {sql.param(now)})"
        columns.append(
            f"(SELECT {js.array}(SUM(CASE WHEN {unused} THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN status = 'VALID_USED' THEN 1 ELSE 0 END),"
            f" SUM(CASE WHEN {expired} THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN status = 'CANCELLED' THEN 1 ELSE 0 END),"
            # Redeemed once is enough, even if released since: used_at is never cleared.
            " COUNT(used_at)) FROM voucher WHERE order_id = p.id) AS part_counts"
        )
    for i, page in enumerate(parts.vouchers):
        # Placeholders are taken in the order they appear in the text (SQLite's are positional).
        status = _effective(sql, now)
        where = "order_id = p.id"
        if page.after_id is not None:
            where += f" AND id > {sql.param(page.after_id)}"
        where += status_condition(sql, page.status, now)
        item = f"x.id, x.line_id, x.code_hint, x.status, {js.time('x.expires_at')}, {js.time('x.created_at')}"
        columns.append(
            f"(SELECT {js.agg}({js.array}({item}, {js.time('x.used_at')})) FROM ("
            f"SELECT id, line_id, code_hint, {status} AS status, expires_at, created_at, used_at"
            f" FROM voucher WHERE {where} ORDER BY id LIMIT {sql.param(page.limit)}) AS x) AS part_v{i}"
        )
    for i, events in enumerate(parts.events):
        where = "e.order_id = p.id"
        if events.before_id is not None:
            where += f" AND e.id < {sql.param(events.before_id)}"
        item = f"x.id, x.kind, x.actor_user_id, x.actor_api_key_id, {js.embed('x.data')}, {js.time('x.created_at')}"
        columns.append(
            f"(SELECT {js.agg}({js.array}({item}, x.email, x.key_name)) FROM ("
            "SELECT e.id, e.kind, e.actor_user_id, e.actor_api_key_id, e.data, e.created_at, u.email,"
            " k.name AS key_name FROM order_event e"
            " LEFT JOIN app_user u ON u.id = e.actor_user_id LEFT JOIN api_key k ON k.id = e.actor_api_key_id"
            f" WHERE {where} ORDER BY e.id DESC LIMIT {sql.param(events.limit)}) AS x) AS part_e{i}"
        )
    if parts.event_totals:
        columns.append("(SELECT COUNT(*) FROM order_event WHERE order_id = p.id) AS part_event_total")
    return columns


async def order_page(
    *,
    account_id: int,
    filter: OrderFilter,
    limit: int,
    after_id: int | None,
    before_id: int | None,
    backwards: bool,
    parts: Parts,
    now: datetime,
) -> OrderPage:
    """Up to `limit` of the account's orders (newest first, keyset cursors), with `parts`, in one statement."""
    conn = connections.get("default")
    sql = Sql(conn)
    js = _Json(sql.postgres)
    where = _where(sql, account_id, filter)
    if after_id is not None:
        where += f" AND id < {sql.param(after_id)}"
    if before_id is not None:
        where += f" AND id > {sql.param(before_id)}"
    direction = "ASC" if backwards else "DESC"
    query = (
        f"WITH page AS (SELECT {_ORDER_COLUMNS} FROM voucher_order WHERE {where}"
        f" ORDER BY id {direction} LIMIT {sql.param(limit)}) SELECT "
    )
    columns = ["p.*", *_parts(sql, js, parts, now)]
    if parts.total:
        # The count goes without the cursor, and with one row even when the page is empty.
        columns.insert(0, "t.total_count")
        source = (
            f"(SELECT COUNT(*) AS total_count FROM voucher_order WHERE {_where(sql, account_id, filter)}) AS t"
            " LEFT JOIN page AS p ON 1 = 1"
        )
    else:
        source = "page AS p"
    query += f"{', '.join(columns)} FROM {source} ORDER BY p.id {direction}"
    _, rows = await conn.execute_query(query, sql.values)
    total = int(rows[0]["total_count"]) if parts.total and rows else None
    return OrderPage([_order(row, parts) for row in rows if row["id"] is not None], total)


async def count_orders(*, account_id: int, filter: OrderFilter) -> int:
    """How many of the account's orders match the filter."""
    conn = connections.get("default")
    sql = Sql(conn)
    _, rows = await conn.execute_query(
        f"SELECT COUNT(*) AS n FROM voucher_order WHERE {_where(sql, account_id, filter)}", sql.values
    )
    return int(rows[0]["n"])


def _array(value: Any) -> list[Any]:
    if value is None:
        return []
    # orjson: the page's JSON parts are most of a dashboard's bytes; json.loads took ~1.5 % of its CPU.
    found: list[Any] = orjson.loads(value) if isinstance(value, str) else value
    return found


def _order(row: Any, parts: Parts) -> OrderRow:
    order = OrderRow(
        id=int(row["id"]),
        number=row["number"],
        customer_name=row["customer_name"],
        notes=row["notes"],
        status=VoucherOrderStatus(row["status"]),
        payment_method=PaymentMethod(row["payment_method"]),
        total=int(row["total"]),
        currency=row["currency"],
        created_at=_FIELDS["created_at"].to_python_value(row["created_at"]),
        voucher_count=int(row["voucher_count"]),
        pdf_status=PdfStatus(row["pdf_status"]),
        pdf_error=row["pdf_error"],
        pdf_generated_at=_FIELDS["pdf_generated_at"].to_python_value(row["pdf_generated_at"]),
    )
    if parts.lines:
        order.lines = sorted((LineRow(*line) for line in _array(row["part_lines"])), key=lambda line: line.position)
    if parts.counts:
        unused, used, expired, cancelled, redeemed = (int(n or 0) for n in _array(row["part_counts"]))
        order.counts = {
            VoucherStatus.VALID_UNUSED: unused,
            VoucherStatus.VALID_USED: used,
            VoucherStatus.EXPIRED: expired,
            VoucherStatus.CANCELLED: cancelled,
        }
        order.redeemed = redeemed > 0
    oid = order.id
    for i, page in enumerate(parts.vouchers):
        items = sorted(_array(row[f"part_v{i}"]), key=itemgetter(0))
        order.vouchers[page] = [
            VoucherRow(vid, oid, line_id, hint, _STATUS[status], _time(exp), _time(made), _time(used) if used else None)
            for vid, line_id, hint, status, exp, made, used in items
        ]
    for i, events in enumerate(parts.events):
        items = sorted(_array(row[f"part_e{i}"]), key=itemgetter(0), reverse=True)
        order.events[events] = [
            EventRow(eid, oid, kind, user_id, key_id, data, _time(made), email, key_name)
            for eid, kind, user_id, key_id, data, made, email, key_name in items
        ]
    if parts.event_totals:
        order.event_total = int(row["part_event_total"])
    return order
