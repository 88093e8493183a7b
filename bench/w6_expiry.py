"""W6: the expiry sweep of 1,000,000 due vouchers against one set-based UPDATE, with redemptions meanwhile.

  A  services.expiry.expire_due (id ranges of expiry.BATCH_SIZE, expiry.SWEEP_LANES at a time,
     each its own transaction: the orders locked in id order, the compare-and-set UPDATE, one
     history event per order);
  B  one statement: UPDATE voucher SET status = 'EXPIRED' WHERE status = 'VALID_UNUSED'
     AND expires_at <= now.
Targets: time A <= 1.2 x time B; no batch of A holds its locks over 1 s (each range's
transaction, one statement on PostgreSQL, timed around services.expiry._expire_range); redemptions  # noqa: SLF001
of other, unexpired codes of the same orders, made meanwhile by another process through
services.redemption.redeem, keep p99 <= 100 ms (pooled over A's rounds; B's are shown too).

The due set is the first N unused vouchers by id (N = 1,000,000, or what the data set
has), less every k-th one, kept unexpired for the redemptions: so they sit in the very
orders the sweep locks. Before every sweep the due set is made unused again with a plain
UPDATE and the table vacuumed, outside the timing; autovacuum is off for the table
meanwhile, so that neither variant meets the other's dead rows or a vacuum mid-run.
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import timedelta

import asyncpg

from bench import seed
from bench.harness import BenchContext, Comparison, interleave, skipped
from bench.stores import asyncpg_dsn
from bench.w6_load import Latencies, LoadSpec, RedeemLoad
from infra import clock, database
from models import ORM_APPS
from services import codes, expiry
from services.events import EventBus, KeptEvents

NEEDS_DATA_SET = True
LOCK_HOLD_MAX = 1.0
P99_MAX = 0.100
SWEEP_TABLE = "bench_w6_sweep"
# Choosing and preparing the due set, then one round (two resets, two sweeps) at full size.
FULL_MIN_SECONDS = 300


async def _prepare(raw: asyncpg.Connection, wanted: int, pool: int, now_due: object) -> tuple[int, list[tuple]]:
    """Choose the due set and the redemption pool; make the due set due. Returns its size and the pool's rows."""
    await raw.execute(f"DROP TABLE IF EXISTS {SWEEP_TABLE}")
    available = await raw.fetchval("SELECT COUNT(*) FROM voucher WHERE status = 'VALID_UNUSED'")
    total = min(wanted + pool, available)
    step = max(2, total // pool)
    await raw.execute(
        f"CREATE TABLE {SWEEP_TABLE} AS SELECT id, (row_number() OVER (ORDER BY id)) % {step} = 0 AS kept"
        f" FROM (SELECT id FROM voucher WHERE status = 'VALID_UNUSED' ORDER BY id LIMIT {total}) chosen"
    )
    await raw.execute(f"ALTER TABLE {SWEEP_TABLE} ADD PRIMARY KEY (id)")
    await raw.execute(
        f"UPDATE voucher v SET expires_at = $1 FROM {SWEEP_TABLE} s WHERE v.id = s.id AND NOT s.kept", now_due
    )
    due = await raw.fetchval(f"SELECT COUNT(*) FROM {SWEEP_TABLE} WHERE NOT kept")
    kept = await raw.fetch(
        f"SELECT v.code_ciphertext, v.code_digest FROM voucher v JOIN {SWEEP_TABLE} s ON s.id = v.id"
        " WHERE s.kept ORDER BY v.id"
    )
    return int(due), [tuple(r) for r in kept]


async def _reset(raw: asyncpg.Connection) -> int:
    """The due set unused again (untimed), and the table vacuumed so the next sweep meets no dead rows."""
    status = await raw.execute(
        f"UPDATE voucher v SET status = 'VALID_UNUSED' FROM {SWEEP_TABLE} s"
        " WHERE v.id = s.id AND NOT s.kept AND v.status = 'EXPIRED'"
    )
    await raw.execute("VACUUM (ANALYZE) voucher")
    await raw.execute("VACUUM (ANALYZE) voucher_order")
    return int(status.split()[-1])


async def run(ctx: BenchContext) -> list[Comparison]:
    wanted, pool, rounds, rate = (15_000, 300, 2, 40.0) if ctx.quick else (1_000_000, 10_000, 3, 40.0)
    if not ctx.quick and ctx.time_left() < FULL_MIN_SECONDS:
        why = f"not run: {ctx.time_left():.0f} s left, a round takes minutes"
        return [skipped(f"W6 expire {wanted:,} vouchers", "s", why)]
    await database.open_db(ctx.database_url, pool_size=6, apps=ORM_APPS)
    raw = await asyncpg.connect(asyncpg_dsn(ctx.database_url), timeout=10, command_timeout=600)
    try:
        await raw.execute("ALTER TABLE voucher SET (autovacuum_enabled = false)")
        due, kept = await _prepare(raw, wanted, pool, clock.now() - timedelta(days=1))
        await raw.execute("VACUUM (ANALYZE) voucher")
        cipher = codes.CodeCipher(ctx.code_key)
        pool_codes = [codes.display(cipher.open(bytes(c), bytes(d))) for c, d in kept]
        # In random order, as customers come: a redemption may meet the range being swept, or any other.
        random.Random(6).shuffle(pool_codes)
        redeemer = await seed.account("W6 Redeemer", seed.email("w6"))
        assert redeemer.user_id is not None
        assert redeemer.account_id is not None
        comparison = Comparison(
            workload=f"W6 expire {due:,} vouchers",
            a_label=f"expire_due, ranges of {expiry.BATCH_SIZE:,}, {expiry.SWEEP_LANES} lanes",
            b_label="one set-based UPDATE",
            unit="s",
            higher_is_better=False,
            target="time A/B <= 1.2; each batch's locks <= 1 s; redeem p99 <= 100 ms during A",
            max_ratio=1.2,
        )
        spec = LoadSpec(
            database_url=ctx.database_url,
            redis_url=ctx.redis_url,
            namespace=ctx.name("w6"),
            code_key=ctx.code_key,
            user_id=redeemer.user_id,
            account_id=redeemer.account_id,
            codes=pool_codes,
            rate=rate,
            workers=4,
            lifetime=max(60.0, ctx.time_left() + 60),
        )
        holds: list[float] = []
        during = {"A": Latencies(), "B": Latencies()}
        expired: dict[str, list[tuple[int, int]]] = {"A": [], "B": []}
        async with RedeemLoad(spec) as load:

            async def sweep(variant: str) -> float:
                await _reset(raw)
                expected = await raw.fetchval(
                    "SELECT COUNT(*) FROM voucher WHERE status = 'VALID_UNUSED' AND expires_at <= $1", clock.now()
                )
                await load.start()
                started = time.perf_counter()
                if variant == "A":
                    count = await _expire_due_timed(holds)
                else:
                    status = await raw.execute(
                        "UPDATE voucher SET status = 'EXPIRED' WHERE status = 'VALID_UNUSED' AND expires_at <= $1",
                        clock.now(),
                    )
                    count = int(status.split()[-1])
                elapsed = time.perf_counter() - started
                during[variant].extend(await load.stop())
                expired[variant].append((count, int(expected)))
                return elapsed

            async def a() -> float:
                return await sweep("A")

            async def b() -> float:
                return await sweep("B")

            comparison.rounds = await interleave(a, b, rounds, show=comparison, deadline=ctx.deadline)
        longest = max(holds, default=float("nan"))
        typical = statistics.median(holds) if holds else float("nan")
        comparison.extra["longest batch transaction (A)"] = (
            f"{longest * 1000:.0f} ms (median {typical * 1000:.0f} ms) over {len(holds)} batches"
            f" (target <= {LOCK_HOLD_MAX * 1000:.0f} ms)",
            longest <= LOCK_HOLD_MAX,
        )
        comparison.extra["redeem latency during A"] = (
            f"{during['A'].text()} (target p99 <= {P99_MAX * 1000:.0f} ms)",
            during["A"].percentile(99) <= P99_MAX,
        )
        comparison.extra["redeem latency during B"] = (during["B"].text(), None)
        for variant, runs in expired.items():
            comparison.check(
                f"{variant} expired every due voucher",
                all(count == expected == due for count, expected in runs),
                f"{runs} (expired, due before) of {due:,}",
            )
        errors = sum(during["A"].errors.values()) + sum(during["B"].errors.values())
        redeemed = len(during["A"].seconds) + len(during["B"].seconds)
        comparison.check("every redemption during the sweeps succeeded", redeemed > 0 and not errors, f"{redeemed}")
        return [comparison]
    finally:
        # The data set as it was (unused, a year after purchase), for whatever runs next.
        await raw.execute(
            f"UPDATE voucher v SET status = 'VALID_UNUSED', expires_at = v.created_at + interval '1 year'"
            f" FROM {SWEEP_TABLE} s WHERE v.id = s.id AND NOT s.kept"
        )
        await raw.execute(f"DROP TABLE IF EXISTS {SWEEP_TABLE}")
        await raw.execute("ALTER TABLE voucher RESET (autovacuum_enabled)")
        await raw.close()
        await database.close_db()


async def _expire_due_timed(holds: list[float]) -> int:
    """expire_due as the worker runs it, each range's transaction timed (the time it holds its locks)."""
    original = expiry._expire_range  # noqa: SLF001

    async def timed(start: int, stop: int, now: object, sweep: str, bus: EventBus) -> int:
        begun = time.perf_counter()
        try:
            return await original(start, stop, now, sweep, bus)  # type: ignore[arg-type]
        finally:
            holds.append(time.perf_counter() - begun)

    expiry._expire_range = timed  # type: ignore[assignment]  # noqa: SLF001
    try:
        return await expiry.expire_due(bus=KeptEvents())
    finally:
        expiry._expire_range = original  # type: ignore[assignment]  # noqa: SLF001
