"""W1's baseline: the dashboard document served by a minimal Strawberry schema from one SQL statement.

bench.w1_dashboard serves `create_app` with uvicorn's own command line, the database in
W1_BASELINE_DSN (postgresql://...).

What the dashboard costs when nothing but Strawberry's own field resolution sits
between HTTP and PostgreSQL: one hand-written statement (asyncpg) authenticates the
bearer token and builds the whole answer as JSON in PostgreSQL (ids, cursors, masked
codes, amounts, counts, effective statuses); the resolvers of the two root fields
share that one statement per request, and every other field is read from the
nested dicts (`default_resolver=getitem`). The schema has the caches STACK.md asks
for (ParserCache, ValidationCache) and nothing else. It answers the same document
with the same JSON as the real API (bench/w1_dashboard.py checks it), for an account
in USD (amounts are formatted with two decimals). Bench-only code: PostgreSQL only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import operator
import os
from typing import Any

import asyncpg
import strawberry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig
from strawberry.types.nodes import SelectedField, convert_selections

from infra import database

DSN_ENV = "W1_BASELINE_DSN"
DEFAULT_PAGE = 20
MASK = "\u2022" * 5


def _timestamp(column: str) -> str:
    # datetime.isoformat() of an aware UTC datetime, as the API's DateTime scalar writes it.
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""


def _money(minor: str, currency: str) -> str:
    return f"json_build_object('amount', ({minor}::numeric / 100)::numeric(20, 2)::text, 'currency_code', {currency})"


def _global_id(type_name: str, column: str) -> str:
    return f"encode(convert_to('{type_name}:' || {column}, 'UTF8'), 'base64')"


def _cursor(column: str) -> str:
    return f"translate(encode(convert_to('k:' || {column}, 'UTF8'), 'base64'), '+/', '-_')"


# $1 token digest, $2 orders a page, $3 vouchers an order.
DASHBOARD_SQL = f"""
WITH me AS (
  SELECT a.id, a.balance, a.currency
  FROM user_session s JOIN app_user u ON u.id = s.user_id JOIN account a ON a.id = u.account_id
  WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now() AND u.is_active
), page AS (
  SELECT o.*, COUNT(*) OVER () AS total_count
  FROM voucher_order o JOIN me ON o.account_id = me.id
  ORDER BY o.id DESC LIMIT $2 + 1
), shown AS (
  SELECT * FROM page ORDER BY id DESC LIMIT $2
)
SELECT json_build_object(
  'viewer', json_build_object(
    'account', (SELECT json_build_object('balance', {_money("balance", "currency")}) FROM me)),
  'orders', json_build_object(
    'total_count', COALESCE((SELECT MAX(total_count) FROM page), 0),
    'page_info', json_build_object(
      'has_next_page', (SELECT COUNT(*) FROM page) > $2,
      'end_cursor', (SELECT {_cursor("MIN(id)")} FROM shown)),
    'edges', COALESCE((SELECT json_agg(json_build_object(
      'cursor', {_cursor("o.id")},
      'node', json_build_object(
        'id', {_global_id("VoucherOrder", "o.id")},
        'number', o.number, 'customer_name', o.customer_name, 'status', o.status,
        'payment_method', o.payment_method, 'created_at', {_timestamp("o.created_at")},
        'total', {_money("o.total", "o.currency")},
        'lines', (SELECT json_agg(json_build_object(
            'product_name', l.product_name, 'quantity', l.quantity, 'validity_years', l.validity_years,
            'fqdns', l.fqdns, 'wildcards', l.wildcards, 'unit_price', {_money("l.unit_price", "o.currency")})
          ORDER BY l.position) FROM voucher_order_line l WHERE l.order_id = o.id),
        'status_counts', json_build_object(
          'valid_unused', c.valid_unused, 'valid_used', c.valid_used, 'expired', c.expired,
          'cancelled', c.cancelled, 'total', c.total),
        'vouchers', json_build_object(
          'total_count', c.total,
          'page_info', json_build_object(
            'has_next_page', v.n > $3,
            'end_cursor', v.end_cursor),
          'edges', v.edges)))
      ORDER BY o.id DESC)
    FROM shown o
    CROSS JOIN LATERAL (
      SELECT
        COUNT(*) FILTER (WHERE status = 'VALID_UNUSED' AND expires_at > now()) AS valid_unused,
        COUNT(*) FILTER (WHERE status = 'VALID_USED') AS valid_used,
        COUNT(*) FILTER (WHERE status = 'EXPIRED' OR (status = 'VALID_UNUSED' AND expires_at <= now())) AS expired,
        COUNT(*) FILTER (WHERE status = 'CANCELLED') AS cancelled,
        COUNT(*) AS total
      FROM voucher WHERE order_id = o.id) c
    CROSS JOIN LATERAL (
      SELECT COUNT(*) AS n,
        {_cursor("MAX(id) FILTER (WHERE rn <= $3)")} AS end_cursor,
        COALESCE(json_agg(json_build_object('node', json_build_object(
          'id', {_global_id("Voucher", "id")},
          'code', 'VS-{MASK}-{MASK}-{MASK}-' || code_hint,
          'status', CASE WHEN status = 'VALID_UNUSED' AND expires_at <= now() THEN 'EXPIRED' ELSE status END,
          'expires_at', {_timestamp("expires_at")})) ORDER BY id) FILTER (WHERE rn <= $3), '[]') AS edges
      FROM (SELECT id, code_hint, status, expires_at, ROW_NUMBER() OVER (ORDER BY id) AS rn
            FROM voucher WHERE order_id = o.id ORDER BY id LIMIT $3 + 1) first_vouchers) v
  ), '[]')))
"""


@strawberry.type
class Money:
    amount: str
    currency_code: str


@strawberry.type
class Account:
    balance: Money


@strawberry.type
class Viewer:
    account: Account | None


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Line:
    product_name: str
    quantity: int
    validity_years: int
    fqdns: int
    wildcards: int
    unit_price: Money


@strawberry.type
class StatusCounts:
    valid_unused: int
    valid_used: int
    expired: int
    cancelled: int
    total: int


@strawberry.type
class Voucher:
    id: strawberry.ID
    code: str
    status: str
    expires_at: str


@strawberry.type
class VoucherEdge:
    node: Voucher


@strawberry.type
class VoucherConnection:
    total_count: int
    page_info: PageInfo
    edges: list[VoucherEdge]


@strawberry.type
class Order:
    id: strawberry.ID
    number: str
    customer_name: str | None
    status: str
    payment_method: str
    created_at: str
    total: Money
    lines: list[Line]
    status_counts: StatusCounts

    @strawberry.field
    def vouchers(self, first: int | None = None) -> VoucherConnection:
        # Already in the answer (the root resolver read `first` from the document); `self` is its dict.
        return self["vouchers"]  # type: ignore[index]


@strawberry.type
class OrderEdge:
    cursor: str
    node: Order


@strawberry.type
class OrderConnection:
    total_count: int
    page_info: PageInfo
    edges: list[OrderEdge]


def _argument(fields: list[Any], path: list[str], name: str) -> int:
    """The value of argument `name` on the field at `path` (GraphQL names), default page size if absent."""
    for field in fields:
        if isinstance(field, SelectedField) and field.name == path[0]:
            if len(path) == 1:
                return int(field.arguments.get(name) or DEFAULT_PAGE)
            return _argument(field.selections, path[1:], name)
    return DEFAULT_PAGE


async def _dashboard(info: strawberry.Info) -> dict[str, Any]:
    """The whole answer, from one statement, once per request (both root fields share it)."""
    context = info.context
    if "dashboard" not in context:
        raw = info._raw_info  # noqa: SLF001  # the baseline reads graphql-core's info as Strawberry does
        selected = convert_selections(raw, list(raw.operation.selection_set.selections))
        orders = _argument(selected, ["voucherOrders"], "first")
        vouchers = _argument(selected, ["voucherOrders", "edges", "node", "vouchers"], "first")
        context["dashboard"] = asyncio.ensure_future(_fetch(context["pool"], context["digest"], orders, vouchers))
    result: dict[str, Any] = await context["dashboard"]
    return result


async def _fetch(pool: asyncpg.Pool, digest: str, orders: int, vouchers: int) -> dict[str, Any]:
    text = await pool.fetchval(DASHBOARD_SQL, digest, orders, vouchers)
    result: dict[str, Any] = json.loads(text)
    return result


@strawberry.type
class Query:
    @strawberry.field
    async def viewer(self, info: strawberry.Info) -> Viewer:
        return (await _dashboard(info))["viewer"]  # type: ignore[no-any-return]

    @strawberry.field
    async def voucher_orders(self, info: strawberry.Info, first: int | None = None) -> OrderConnection:
        return (await _dashboard(info))["orders"]  # type: ignore[no-any-return]


class BaselineGraphQL(GraphQL[dict[str, Any], None]):
    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> dict[str, Any]:
        scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
        digest = hashlib.sha256(token.strip().encode()).hexdigest() if scheme.lower() == "bearer" else ""
        return {"pool": request.app.state.pool, "digest": digest}


def create_app() -> Starlette:
    dsn = os.environ[DSN_ENV]

    async def lifespan(app: Starlette) -> Any:
        # The application's pool settings: no reset statement on release (infra.database).
        app.state.pool = await asyncpg.create_pool(
            dsn,
            min_size=2,
            max_size=10,
            server_settings={"TimeZone": "UTC"},
            connection_class=database.PooledConnection,
        )
        try:
            yield
        finally:
            await app.state.pool.close()

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    config = StrawberryConfig(default_resolver=operator.getitem)
    schema = strawberry.Schema(query=Query, extensions=[ParserCache, ValidationCache], config=config)
    graphql = BaselineGraphQL(schema, graphql_ide=None, allow_queries_via_get=False)
    routes = [Route("/graphql", graphql, methods=["POST"]), Route("/healthz", healthz)]
    return Starlette(routes=routes, lifespan=lifespan)
