"""W2: one order of 10,000 vouchers, debit included, against a raw COPY of the same vouchers.

  A  `place_order` of one line of N vouchers paid by balance, end to end (quote, debit,
     order, line, vouchers, history, outbox rows, in one transaction);
  B  raw asyncpg in one transaction: generate N codes, HMAC + AES-GCM them and COPY them
     into the voucher table, for the line of a one-voucher order placed untimed just
     before (so B appends to the indexes where A does).
Both write into the seeded data set (1,000,000 vouchers), so index maintenance is what a
real order meets. Target: time A <= 2 x time B. --profile: cProfile of one more A round.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from tortoise import connections

from bench import profilers, seed
from bench.harness import BenchContext, Comparison, interleave
from bench.stores import asyncpg_dsn
from infra import database
from models import ORM_APPS, PaymentMethod, VoucherOrderLine, VoucherStatus
from services import codes
from services.actors import Actor
from services.catalogue import LineRequest
from services.events import KeptEvents
from services.orders import OrderRequest, expiry_of, place_order
from services.payments import SandboxGateway

NEEDS_DATA_SET = True
TIME_RATIO_MAX = 2.0
VOUCHER_COLUMNS = [
    "account_id",
    "order_id",
    "line_id",
    "code_digest",
    "code_ciphertext",
    "code_hint",
    "status",
    "expires_at",
    "created_at",
]


@dataclass(frozen=True)
class Fixture:
    actor: Actor
    account_id: int
    cipher: codes.CodeCipher  # the data set's key, so that every code in the database opens with it


def _lines(quantity: int) -> list[LineRequest]:
    return [LineRequest("BASIC_OV", quantity=quantity, validity_years=1, fqdns=1, wildcards=0)]


async def _place(fx: Fixture, size: int) -> int:
    request = OrderRequest(lines=_lines(size), payment_method=PaymentMethod.ACCOUNT_BALANCE)
    order = await place_order(
        actor=fx.actor,
        request=request,
        gateway=SandboxGateway(),
        cipher=fx.cipher,
        public_url=seed.PUBLIC_URL,
        bus=KeptEvents(),
    )
    if order.voucher_count != size:
        raise RuntimeError(f"w2: an order of {size} holds {order.voucher_count} vouchers")
    return int(order.id)


async def service_round(fx: Fixture, size: int) -> float:
    """A: one order of `size` vouchers through the service, end to end."""
    started = time.perf_counter()
    await _place(fx, size)
    return time.perf_counter() - started


async def baseline_round(conn: asyncpg.Connection, fx: Fixture, size: int) -> float:
    """B: generate, seal and COPY `size` vouchers in one raw transaction (the order and line placed untimed)."""
    order_id = await _place(fx, 1)
    line = await VoucherOrderLine.get(order_id=order_id)
    started = time.perf_counter()
    now = datetime.now(UTC)
    expires_at = expiry_of(now)
    valid = VoucherStatus.VALID_UNUSED.value
    async with conn.transaction():
        sealed = [fx.cipher.seal(codes.generate()) for _ in range(size)]
        records = [
            (fx.account_id, order_id, line.id, s.digest, s.ciphertext, s.hint, valid, expires_at, now) for s in sealed
        ]
        await conn.copy_records_to_table("voucher", records=records, columns=VOUCHER_COLUMNS)
    return time.perf_counter() - started


async def run(ctx: BenchContext) -> list[Comparison]:
    size, rounds = (1_000, 2) if ctx.quick else (10_000, 5)
    comparison = Comparison(
        workload=f"W2 one {size:,}-voucher order",
        a_label="place_order, debit included",
        b_label="raw asyncpg generate + HMAC + AES-GCM + COPY",
        unit="s",
        higher_is_better=False,
        target=f"time A/B <= {TIME_RATIO_MAX}",
        max_ratio=TIME_RATIO_MAX,
    )
    await database.open_db(ctx.database_url, pool_size=5, apps=ORM_APPS)
    raw = await asyncpg.connect(asyncpg_dsn(ctx.database_url), timeout=10)
    try:
        # The rounds, the warm-up, the profile, and the one-voucher orders B adds its vouchers to.
        vouchers = size * (rounds + 1) + min(size, 1_000) * 2 + rounds + 1
        actor = await seed.partner("W2 Partner", funds=await seed.cost(_lines(1), vouchers))
        fx = Fixture(actor, actor.require_account(), codes.CodeCipher(ctx.code_key))
        # Warm-up, not counted: prepared statements, pool connections, first-use imports.
        await service_round(fx, min(size, 1_000))
        await baseline_round(raw, fx, min(size, 1_000))
        comparison.rounds = await interleave(
            lambda: service_round(fx, size),
            lambda: baseline_round(raw, fx, size),
            rounds,
            show=comparison,
            deadline=ctx.deadline,
        )
        if ctx.profile:
            with profilers.cprofile(
                f"W2 cProfile of one more A round of {size:,}", r"services|models|tortoise|asyncpg"
            ):
                await service_round(fx, size)
        per_order = await connections.get("default").execute_query_dict(
            "SELECT o.voucher_count AS declared, COUNT(v.id) AS stored FROM voucher_order o"
            " LEFT JOIN voucher v ON v.order_id = o.id WHERE o.account_id = $1 GROUP BY o.id",
            [fx.account_id],
        )
        # A's orders hold exactly N vouchers; B's hold their 1 placed voucher plus the N copied in.
        a_orders = sum(1 for r in per_order if r["declared"] == size and r["stored"] == size)
        b_orders = sum(1 for r in per_order if r["declared"] == 1 and r["stored"] == size + 1)
        comparison.check(
            "every order holds its vouchers",
            a_orders >= len(comparison.rounds) and b_orders >= len(comparison.rounds),
            f"{a_orders} service orders of {size:,}, {b_orders} baseline lines of {size:,}",
        )
        await seed.quiet_outbox()  # their e-mails and PDFs are no later workload's business
    finally:
        await raw.close()
        await database.close_db()
    return [comparison]
