"""Batched reads behind the dashboard: one statement for many orders, whatever the page sizes.

A voucher's status is read as it is at this moment: one past its expiry reads
EXPIRED whether or not the expiry job has run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from tortoise import connections

from infra.sql import Sql
from models import OrderEvent, Voucher, VoucherStatus

_EXPIRES_AT = Voucher._meta.fields_map["expires_at"]
_DATETIME_COLUMNS = ("expires_at", "created_at", "used_at")


def effective_status(status: VoucherStatus | str, expires_at: datetime, now: datetime) -> VoucherStatus:
    status = VoucherStatus(status)
    if status == VoucherStatus.VALID_UNUSED and expires_at <= now:
        return VoucherStatus.EXPIRED
    return status


def status_condition(sql: Sql, status: VoucherStatus | None, now: datetime) -> str:
    if status is None:
        return ""
    if status == VoucherStatus.EXPIRED:
        return f" AND (status = 'EXPIRED' OR (status = 'VALID_UNUSED' AND expires_at <= {sql.param(now)}))"
    if status == VoucherStatus.VALID_UNUSED:
        return f" AND status = 'VALID_UNUSED' AND expires_at > {sql.param(now)}"
    return f" AND status = {sql.param(status.value)}"


async def status_counts(order_ids: Sequence[int], now: datetime) -> dict[int, dict[VoucherStatus, int]]:
    """Vouchers per order and status, as of now."""
    counts: dict[int, dict[VoucherStatus, int]] = {oid: dict.fromkeys(VoucherStatus, 0) for oid in order_ids}
    if not order_ids:
        return counts
    conn = connections.get("default")
    sql = Sql(conn)
    expired_at = sql.param(now)
    query = (
        "SELECT order_id, CASE WHEN status = 'VALID_UNUSED' AND expires_at <= "
        f"{expired_at} THEN 'EXPIRED' ELSE status END AS effective, COUNT(*) AS n "
        f"FROM voucher WHERE order_id IN ({sql.ids(order_ids)}) GROUP BY 1, 2"
    )
    for row in await conn.execute_query_dict(query, sql.values):
        counts[int(row["order_id"])][VoucherStatus(row["effective"])] = int(row["n"])
    return counts


class VoucherRow(NamedTuple):
    # A tuple, not a dataclass: a dashboard builds a thousand of them a request.
    id: int
    order_id: int
    line_id: int
    code_hint: str
    status: VoucherStatus
    expires_at: datetime
    created_at: datetime
    used_at: datetime | None


async def first_vouchers(
    order_ids: Sequence[int], *, limit: int, after_id: int | None, status: VoucherStatus | None, now: datetime
) -> dict[int, list[VoucherRow]]:
    """Up to `limit` vouchers of each order (by id, after a cursor), in one statement."""
    result: dict[int, list[VoucherRow]] = defaultdict(list)
    if not order_ids or limit <= 0:
        return result
    conn = connections.get("default")
    sql = Sql(conn)
    where = f"order_id IN ({sql.ids(order_ids)})"
    if after_id is not None:
        where += f" AND id > {sql.param(after_id)}"
    where += status_condition(sql, status, now)
    query = (
        "SELECT id, order_id, line_id, code_hint, status, expires_at, created_at, used_at FROM ("
        "SELECT id, order_id, line_id, code_hint, status, expires_at, created_at, used_at, "
        "ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY id) AS rn "
        f"FROM voucher WHERE {where}) AS page WHERE rn <= {sql.param(limit)} ORDER BY order_id, id"
    )
    for row in await conn.execute_query_dict(query, sql.values):
        for column in _DATETIME_COLUMNS:
            row[column] = _EXPIRES_AT.to_python_value(row[column])
        expires_at = row["expires_at"]
        result[int(row["order_id"])].append(
            VoucherRow(
                id=int(row["id"]),
                order_id=int(row["order_id"]),
                line_id=int(row["line_id"]),
                code_hint=row["code_hint"],
                status=effective_status(row["status"], expires_at, now),
                expires_at=expires_at,
                created_at=row["created_at"],
                used_at=row["used_at"],
            )
        )
    return result


class EventRow(NamedTuple):
    id: int
    order_id: int
    kind: str
    actor_user_id: int | None
    actor_api_key_id: int | None
    data: Any
    created_at: datetime
    # The actor's e-mail or key name, when the statement that read the event joined them.
    actor_email: str | None = None
    actor_key_name: str | None = None


async def first_events(order_ids: Sequence[int], *, limit: int, before_id: int | None) -> dict[int, list[EventRow]]:
    """Up to `limit` history events of each order, newest first, in one statement."""
    result: dict[int, list[EventRow]] = defaultdict(list)
    if not order_ids or limit <= 0:
        return result
    conn = connections.get("default")
    sql = Sql(conn)
    where = f"order_id IN ({sql.ids(order_ids)})"
    if before_id is not None:
        where += f" AND id < {sql.param(before_id)}"
    query = (
        "SELECT id, order_id, kind, actor_user_id, actor_api_key_id, data, created_at FROM ("
        "SELECT id, order_id, kind, actor_user_id, actor_api_key_id, data, created_at, "
        "ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY id DESC) AS rn "
        f"FROM order_event WHERE {where}) AS page WHERE rn <= {sql.param(limit)} ORDER BY order_id, id DESC"
    )
    data_field = OrderEvent._meta.fields_map["data"]
    for row in await conn.execute_query_dict(query, sql.values):
        result[int(row["order_id"])].append(
            EventRow(
                id=int(row["id"]),
                order_id=int(row["order_id"]),
                kind=row["kind"],
                actor_user_id=row["actor_user_id"],
                actor_api_key_id=row["actor_api_key_id"],
                data=data_field.to_python_value(row["data"]),
                created_at=_EXPIRES_AT.to_python_value(row["created_at"]),
            )
        )
    return result
