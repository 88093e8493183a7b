"""W2: one order of 10,000 vouchers, debit included, against a raw COPY of the same vouchers.

  A  `place_order` of one line of N vouchers paid by balance, end to end (quote, debit,
     order, line, vouchers, history, outbox rows, in one transaction);
  B  raw asyncpg in one transaction: generate N codes, HMAC + AES-GCM them and COPY
     them into the voucher table (for a line of an order placed untimed just before).
Both write into the seeded data set (1,000,000 vouchers), so index maintenance is
what a real order meets. Target: time A <= 2 x time B. The rounds are bench/bulk_order.py's
(still runnable on its own: `python -m bench.bulk_order`), under the suite's harness.
"""

from __future__ import annotations

import dataclasses

import asyncpg
from tortoise import connections

from bench import bulk_order
from bench.context import BenchContext
from bench.harness import Comparison, interleave
from bench.postgres import asyncpg_dsn
from bench.seed import quiet_outbox
from infra import database
from models import ORM_APPS
from services import codes


async def run(ctx: BenchContext) -> list[Comparison]:
    size, rounds = (1_000, 2) if ctx.quick else (10_000, 5)
    comparison = Comparison(
        workload=f"W2 one {size:,}-voucher order",
        a_label="place_order, debit included",
        b_label="raw asyncpg generate + HMAC + AES-GCM + COPY",
        unit="s",
        higher_is_better=False,
        target="time A/B <= 2.0",
        max_ratio=2.0,
    )
    await database.open_db(ctx.database_url, pool_size=5, apps=ORM_APPS)
    raw = await asyncpg.connect(asyncpg_dsn(ctx.database_url), timeout=10)
    try:
        fx = await bulk_order.set_up([size], rounds)
        # The data set's key, so that every code in the database opens with it (W6 redeems some).
        fx = dataclasses.replace(fx, cipher=codes.CodeCipher(ctx.code_key))
        # Warm-up, not counted: prepared statements, pool connections, first-use imports.
        await bulk_order.service_round(fx, min(size, 1_000))
        await bulk_order.baseline_round(raw, fx, min(size, 1_000))

        async def a() -> float:
            return await bulk_order.service_round(fx, size)

        async def b() -> float:
            return await bulk_order.baseline_round(raw, fx, size)

        comparison.rounds = await interleave(a, b, rounds, show=comparison, deadline=ctx.deadline)
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
        await quiet_outbox()  # their e-mails and PDFs are no later workload's business
    finally:
        await raw.close()
        await database.close_db()
    return [comparison]
