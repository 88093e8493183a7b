"""W4: the codes CSV of an order of 100,000 and of 1,000,000 vouchers, against a hand-written export.

  A  services.exports.csv_chunks (keyset batches of plain rows, decrypt, csv.writer per
     batch), written chunk by chunk to a file: what the signed CSV download streams;
  B  raw asyncpg: a server-side cursor over the order's vouchers joined to their lines,
     fetched in chunks, decrypted and written with csv.writer to a file.
Every run is in a fresh process (spawned, untimed), so its memory figure is its own:
the growth is the peak RSS during the export (high-water mark reset just before) less
the RSS before it. Targets: time A <= 1.5 x time B, growth <= 20 MB at both sizes; the
two files must be byte-identical.

100,000 is the seeded data set's largest order. 1,000,000 is one order of 1,000,000
vouchers, made for W4 in a database of its own the way the seed makes its largest order
(place_order with the order caps lifted, lines of 10,000): an export of the whole data
set would be 2,000 exports, not the one large export whose memory must stay flat, and
the shared data set stays at 1,000,000 vouchers for W6. A full run only; --quick exports
the seeded largest order (2,000).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from tortoise import connections

from bench import seed
from bench.harness import BenchContext, Comparison, interleave, skipped
from bench.processes import memory_mb, reset_peak_memory, spawn_pool
from bench.stores import asyncpg_dsn, throwaway_database
from infra import database
from models import ORM_APPS, VoucherOrder
from services import codes, exports

NEEDS_DATA_SET = True
TIME_RATIO_MAX = 1.5
GROWTH_MAX_MB = 20.0
LARGE = 1_000_000


# -- in the child process --------------------------------------------------------------------------------------


BASELINE_SQL = """
SELECT v.code_ciphertext, v.code_digest, v.status, v.expires_at,
       l.product_name, l.validity_years, l.fqdns, l.wildcards
FROM voucher v JOIN voucher_order_line l ON l.id = v.line_id
WHERE v.order_id = $1
ORDER BY v.id
"""


@dataclass(frozen=True)
class Runner:
    """One variant, set up: `run` writes the whole CSV once; `close` releases its connections."""

    run: Callable[[], Awaitable[None]]
    close: Callable[[], Awaitable[None]]


async def service_export(url: str, order_id: int, code_key: bytes, path: Path) -> Runner:
    """A: exports.csv_chunks, written chunk by chunk to a file."""
    await database.open_db(url, pool_size=2, apps=ORM_APPS)
    order = await VoucherOrder.get(id=order_id)
    cipher = codes.CodeCipher(code_key)

    async def run() -> None:
        with path.open("w", newline="", encoding="utf-8") as fh:
            async for chunk in exports.csv_chunks(order=order, cipher=cipher, public_url=seed.PUBLIC_URL):
                fh.write(chunk)

    return Runner(run, database.close_db)


async def baseline_export(url: str, order_id: int, code_key: bytes, path: Path) -> Runner:
    """B: a server-side cursor over the vouchers and their lines, decrypted, csv.writer to a file."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    cipher = codes.CodeCipher(code_key)

    async def run() -> None:
        now = datetime.now(UTC)
        redeem = f"{seed.PUBLIC_URL}/redeem/"
        cell = exports.cell
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(exports.HEADER)
            async with conn.transaction():
                cursor = await conn.cursor(BASELINE_SQL, order_id)
                while rows := await cursor.fetch(exports.BATCH_SIZE):
                    expiries: dict[datetime, str] = {}
                    for ciphertext, digest, status, expires_at, product, years, fqdns, wildcards in rows:
                        code = codes.display(cipher.open(ciphertext, digest))
                        expiry = expiries.get(expires_at)
                        if expiry is None:
                            iso = expires_at.astimezone(UTC).isoformat(timespec="seconds")
                            expiry = expiries[expires_at] = iso.replace("+00:00", "Z")
                        if status == "VALID_UNUSED" and expires_at <= now:
                            status = "EXPIRED"
                        row = [cell(code), cell(redeem + code), cell(product), cell(years), cell(fqdns)]
                        writer.writerow([*row, cell(wildcards), status, expiry])

    return Runner(run, conn.close)


async def _export(variant: str, url: str, order_id: int, code_key: bytes) -> dict[str, Any]:
    build = service_export if variant == "A" else baseline_export
    with tempfile.TemporaryDirectory(prefix="bench-w4-") as tmp:
        path = Path(tmp) / "codes.csv"
        runner = await build(url, order_id, code_key, path)
        try:
            rss_before = reset_peak_memory()
            started = time.perf_counter()
            await runner.run()
            seconds = time.perf_counter() - started
            peak = memory_mb("VmHWM")
        finally:
            await runner.close()
        digest, lines = hashlib.sha256(), 0
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
                lines += block.count(b"\n")  # "\r\n" may straddle two blocks; "\n" cannot
    return {
        "seconds": seconds,
        "growth_mb": (peak - rss_before) * 1.048576,
        "sha256": digest.hexdigest(),
        "lines": lines,
    }


def export_once(variant: str, url: str, order_id: int, code_key: bytes) -> dict[str, Any]:
    return asyncio.run(_export(variant, url, order_id, code_key))


# -- in the suite ----------------------------------------------------------------------------------------------


def _warm() -> None:
    """Nothing: makes a spawned process import this module (and the services) before the timing."""


class Processes:
    """Where each run goes: a fresh process per run (full), or one reused per variant (--quick).

    --quick cannot pay ~1-2 s of interpreter start-up per run; its later runs then reuse a
    process whose heap the first run grew, so only its first figure per variant is a fresh one.
    """

    def __init__(self, reuse: bool) -> None:
        self.reuse = reuse
        self._pools: dict[str, ProcessPoolExecutor] = {}

    def _pool(self, variant: str) -> ProcessPoolExecutor:
        pool = self._pools.get(variant)
        if pool is None:
            pool = spawn_pool()
            pool.submit(_warm)
            if self.reuse:
                self._pools[variant] = pool
        return pool

    async def run(self, variant: str, *args: Any) -> dict[str, Any]:
        pool = self._pool(variant)

        def call() -> dict[str, Any]:
            try:
                return pool.submit(export_once, variant, *args).result(timeout=600)
            finally:
                if not self.reuse:
                    pool.shutdown()

        return await asyncio.to_thread(call)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown()


async def compare(ctx: BenchContext, url: str, order_id: int, size: int, rounds: int) -> Comparison:
    c = Comparison(
        workload=f"W4 CSV of {size:,} vouchers",
        a_label="exports.csv_chunks to a file",
        b_label="asyncpg server-side cursor + decrypt + csv.writer",
        unit="s",
        higher_is_better=False,
        target=f"time A/B <= {TIME_RATIO_MAX}; memory growth <= {GROWTH_MAX_MB:.0f} MB",
        max_ratio=TIME_RATIO_MAX,
    )
    runs: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    processes = Processes(reuse=ctx.quick)
    if ctx.quick:  # both started at once, before the timing
        warm = [processes._pool(v).submit(_warm).result for v in runs]  # noqa: SLF001  # the pools it times
        await asyncio.gather(*(asyncio.to_thread(ready) for ready in warm))

    async def one(variant: str) -> float:
        result = await processes.run(variant, url, order_id, ctx.code_key)
        runs[variant].append(result)
        return float(result["seconds"])

    async def a() -> float:
        return await one("A")

    async def b() -> float:
        return await one("B")

    try:
        c.rounds = await interleave(a, b, rounds, show=c, deadline=ctx.deadline)
    finally:
        processes.close()
    for variant in ("A", "B"):
        growth = [r["growth_mb"] for r in runs[variant]]
        text = f"{max(growth):.1f} MB at most ({', '.join(f'{g:.1f}' for g in growth)})"
        c.extra[f"memory growth {variant}"] = (text, max(growth) <= GROWTH_MAX_MB if variant == "A" else None)
    digests = {r["sha256"] for rs in runs.values() for r in rs}
    lines = {r["lines"] for rs in runs.values() for r in rs}
    c.check("files byte-identical, one line per voucher", len(digests) == 1 and lines == {size + 1}, f"{lines}")
    return c


async def _largest_order(url: str) -> tuple[int, int]:
    await database.open_db(url, pool_size=2, apps=ORM_APPS)
    try:
        [row] = await connections.get("default").execute_query_dict(
            "SELECT id, voucher_count FROM voucher_order ORDER BY voucher_count DESC, id LIMIT 1"
        )
        return int(row["id"]), int(row["voucher_count"])
    finally:
        await database.close_db()


async def _order_of(url: str, size: int, code_key: bytes) -> int:
    """One order of `size` vouchers in W4's own database, placed as the seed places its largest."""
    await database.open_db(url, pool_size=3, apps=ORM_APPS)
    try:
        started = time.perf_counter()
        order_id = await seed.order_of("W4 Partner", size, code_key)
        print(f"  W4: placed one order of {size:,} vouchers in {time.perf_counter() - started:.1f} s", flush=True)
        return order_id
    finally:
        await database.close_db()


async def run(ctx: BenchContext) -> list[Comparison]:
    rounds = 2 if ctx.quick else 3
    order_id, size = await _largest_order(ctx.database_url)
    results = [await compare(ctx, ctx.database_url, order_id, size, rounds)]
    if ctx.quick:
        return results
    if ctx.time_left() < 240:
        return [*results, skipped(f"W4 CSV of {LARGE:,} vouchers", "s", f"not run: {ctx.time_left():.0f} s left")]
    async with throwaway_database(ctx.server_url, ctx.name("w4")) as url:
        large_id = await _order_of(url, LARGE, ctx.code_key)
        results.append(await compare(ctx, url, large_id, LARGE, rounds))
    return results
