"""The codes CSV of one large order: the export service against a hand-written baseline.

Run by hand, against a local PostgreSQL server (never anything but loopback):

    uv run python -m bench.csv_export [--vouchers 100000] [--batch-size 1000] [--repeat 3]

DATABASE_URL names the server (default postgres://postgres@127.0.0.1:5432/test);
the benchmark creates a database of its own there and drops it at the end.

It seeds one order of N vouchers through the project's own paths: `place_order`
for the first line (at most 10,000 vouchers an order through the API), then more
lines of the same order filled by `insert_vouchers` (COPY). Then, each in a fresh
process so that memory figures are its own:
  A  the service: `exports.csv_chunks` (keyset batches, decrypt, csv.writer per batch)
     written chunk by chunk to a temporary file;
  B  the baseline: raw asyncpg, a server-side cursor over the vouchers joined to
     their lines, fetched in chunks, decrypted and written with csv.writer to a file.
Per variant: the median time of `--repeat` runs and rows/s; RSS growth of the first
run (ru_maxrss after minus before, in a process that has not exported before); the
tracemalloc peak of one more run (traced separately: tracing slows allocation).
Both files must be byte-identical; the ratio of the median times A/B is printed last.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import multiprocessing
import resource
import secrets
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from tortoise.transactions import in_transaction

from bench.postgres import admin_execute, asyncpg_dsn, server_url, with_database
from infra import database
from models import ORM_APPS, Role, VoucherOrder, VoucherOrderLine
from services import accounts, catalogue, codes, exports, staff
from services.actors import Actor
from services.catalogue import LineRequest
from services.orders import OrderRequest, expiry_of, insert_vouchers, place_order, seal_codes
from services.payments import SandboxGateway

PUBLIC_URL = "https://vouchsafe.example"
PRODUCT = "BASIC_OV"
BASELINE_SQL = """
SELECT v.code_ciphertext, v.code_digest, v.status, v.expires_at,
       l.product_name, l.validity_years, l.fqdns, l.wildcards
FROM voucher v JOIN voucher_order_line l ON l.id = v.line_id
WHERE v.order_id = $1
ORDER BY v.id
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.csv_export", description=__doc__.split("\n\n")[0])
    p.add_argument("--vouchers", type=int, default=100_000, help="vouchers in the order (default 100000)")
    p.add_argument("--batch-size", type=int, default=exports.BATCH_SIZE, help="rows a batch, both variants")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per variant (default 3)")
    args = p.parse_args(argv)
    if not 1 <= args.vouchers <= 2_000_000:
        p.error("--vouchers from 1 to 2000000")
    if not 1 <= args.batch_size <= 100_000 or not 1 <= args.repeat <= 20:
        p.error("--batch-size from 1 to 100000, --repeat from 1 to 20")
    return args


async def seed(vouchers: int, code_key: bytes) -> int:
    """One partner order of `vouchers` vouchers: placed by the service, grown line by line with COPY."""
    user = await accounts.sign_up(
        email=f"bench-{secrets.token_hex(5)}@example.com",
        password=secrets.token_urlsafe(15),
        account_name="Bench Partner",
        locale="en",
        public_url=PUBLIC_URL,
    )
    actor = Actor(user_id=user.id, account_id=user.account_id, role=Role.ADMIN)
    await staff.set_partner(account_id=actor.require_account(), enabled=True)
    cipher = codes.CodeCipher(code_key)
    first = min(vouchers, catalogue.MAX_QUANTITY)
    request = OrderRequest(lines=[LineRequest(PRODUCT, first, 1, 1, 0)], card_token="tok_visa")
    order = await place_order(
        actor=actor, request=request, gateway=SandboxGateway(), cipher=cipher, public_url=PUBLIC_URL
    )
    line = await VoucherOrderLine.get(order_id=order.id)
    left, position = vouchers - first, 1
    while left > 0:
        quantity, position = min(left, catalogue.MAX_QUANTITY), position + 1
        async with in_transaction() as conn:
            extra = await VoucherOrderLine.create(
                order_id=order.id,
                position=position,
                product_id=line.product_id,
                product_code=line.product_code,
                product_name=line.product_name,
                quantity=quantity,
                validity_years=line.validity_years,
                fqdns=line.fqdns,
                wildcards=line.wildcards,
                unit_price=line.unit_price,
                line_total=line.unit_price * quantity,
                using_db=conn,
            )
            await insert_vouchers(
                conn,
                order,
                extra.id,
                seal_codes(cipher, quantity),
                created_at=order.created_at,
                expires_at=expiry_of(order.created_at),
            )
        left -= quantity
    await VoucherOrder.filter(id=order.id).update(voucher_count=vouchers, total=line.unit_price * vouchers)
    return order.id


@dataclass(frozen=True)
class Runner:
    """One variant, set up: `run` writes the whole CSV once; `close` releases its connections."""

    run: Callable[[], Awaitable[None]]
    close: Callable[[], Awaitable[None]]


async def service_export(url: str, order_id: int, code_key: bytes, path: Path, batch_size: int) -> Runner:
    await database.open_db(url, pool_size=2, apps=ORM_APPS)
    order = await VoucherOrder.get(id=order_id)
    cipher = codes.CodeCipher(code_key)

    async def run() -> None:
        with path.open("w", newline="", encoding="utf-8") as fh:
            async for chunk in exports.csv_chunks(
                order=order, cipher=cipher, public_url=PUBLIC_URL, batch_size=batch_size
            ):
                fh.write(chunk)

    return Runner(run, database.close_db)


async def baseline_export(url: str, order_id: int, code_key: bytes, path: Path, batch_size: int) -> Runner:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    cipher = codes.CodeCipher(code_key)

    async def run() -> None:
        now = datetime.now(UTC)
        redeem = f"{PUBLIC_URL}/redeem/"
        cell = exports.cell
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(exports.HEADER)
            async with conn.transaction():
                cursor = await conn.cursor(BASELINE_SQL, order_id)
                while rows := await cursor.fetch(batch_size):
                    expiries: dict[datetime, str] = {}
                    for ciphertext, digest, status, expires_at, product, years, fqdns, wildcards in rows:
                        code = codes.display(cipher.open(ciphertext, digest))
                        expiry = expiries.get(expires_at)
                        if expiry is None:
                            iso = expires_at.astimezone(UTC).isoformat(timespec="seconds")
                            expiry = expiries[expires_at] = iso.replace("+00:00", "Z")
                        if status == "VALID_UNUSED" and expires_at <= now:
                            status = "EXPIRED"
                        writer.writerow(
                            [
                                cell(code),
                                cell(redeem + code),
                                cell(product),
                                cell(years),
                                cell(fqdns),
                                cell(wildcards),
                                status,
                                expiry,
                            ]
                        )

    return Runner(run, conn.close)


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _proc_status_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets VmHWM, so the next peak is the run's own, not the import's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def _measure(variant: str, url: str, order_id: int, code_key: bytes, batch_size: int, repeat: int) -> dict:
    build = service_export if variant == "service" else baseline_export
    with tempfile.TemporaryDirectory(prefix="vouchsafe-bench-") as tmp:
        path = Path(tmp) / f"{variant}.csv"
        runner = await build(url, order_id, code_key, path, batch_size)
        try:
            rss_before = _maxrss_mib()
            current_before = _proc_status_mib("VmRSS")
            peak_reset = _reset_peak_rss()
            times: list[float] = []
            rss_growth = 0.0
            hwm_growth: float | None = None
            for _ in range(repeat):
                started = time.perf_counter()
                await runner.run()
                times.append(time.perf_counter() - started)
                if len(times) == 1:
                    rss_growth = _maxrss_mib() - rss_before
                    peak = _proc_status_mib("VmHWM")
                    if peak_reset and peak is not None and current_before is not None:
                        hwm_growth = peak - current_before
            tracemalloc.start()
            await runner.run()
            traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        finally:
            await runner.close()
        body = path.read_bytes()
    return {
        "variant": variant,
        "times": times,
        "median": statistics.median(times),
        "rss_growth_mib": rss_growth,
        "hwm_growth_mib": hwm_growth,
        "traced_peak_mib": traced_peak,
        "lines": body.count(b"\r\n"),
        "bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }


def measure(variant: str, url: str, order_id: int, code_key: bytes, batch_size: int, repeat: int) -> dict:
    return asyncio.run(_measure(variant, url, order_id, code_key, batch_size, repeat))


def in_fresh_process(*args: Any) -> dict:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure, *args).result()


async def _seed_database(url: str, vouchers: int, code_key: bytes) -> tuple[int, float]:
    await database.migrate(url, apps=ORM_APPS)
    await database.open_db(url, pool_size=4, apps=ORM_APPS)
    try:
        started = time.perf_counter()
        order_id = await seed(vouchers, code_key)
        return order_id, time.perf_counter() - started
    finally:
        await database.close_db()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    server = server_url()
    name = f"vouchsafe_bench_{secrets.token_hex(4)}"
    url = with_database(server, name)
    code_key = secrets.token_bytes(32)
    asyncio.run(admin_execute(server, f'CREATE DATABASE "{name}"'))
    try:
        order_id, seeded = asyncio.run(_seed_database(url, args.vouchers, code_key))
        print(f"seeded one order of {args.vouchers:,} vouchers in {seeded:.1f} s (database {name})")
        print(f"batch size {args.batch_size:,}, {args.repeat} timed runs per variant, each variant in a fresh process")
        results = [
            in_fresh_process(variant, url, order_id, code_key, args.batch_size, args.repeat)
            for variant in ("service", "baseline")
        ]
    finally:
        asyncio.run(admin_execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    labels = {"service": "A service  (csv_chunks)", "baseline": "B baseline (asyncpg cursor)"}
    print(
        f"{'':30} {'median s':>9} {'rows/s':>10} {'maxrss +MiB':>12} {'VmHWM +MiB':>11} {'traced peak MiB':>16}  runs s"
    )
    for r in results:
        runs = " ".join(f"{t:.3f}" for t in r["times"])
        rate = args.vouchers / r["median"]
        hwm = "n/a" if r["hwm_growth_mib"] is None else f"{r['hwm_growth_mib']:.1f}"
        print(
            f"{labels[r['variant']]:30} {r['median']:9.3f} {rate:10,.0f} {r['rss_growth_mib']:12.1f} {hwm:>11}"
            f" {r['traced_peak_mib']:16.2f}  {runs}"
        )
    print(
        "maxrss +MiB: getrusage ru_maxrss after the first run minus before it (0 when the run stays under the"
        " process's earlier high-water mark); VmHWM +MiB: peak RSS of the first run (high-water mark reset"
        " just before) minus the RSS before it"
    )
    service, baseline = results
    for r in results:
        if r["lines"] != args.vouchers + 1:
            raise SystemExit(f"bench: {r['variant']} wrote {r['lines']} lines, expected {args.vouchers + 1}")
    identical = service["sha256"] == baseline["sha256"]
    print(f"files: {service['bytes']:,} bytes, {service['lines']:,} lines; byte-identical: {identical}")
    print(f"time ratio A/B: {service['median'] / baseline['median']:.2f}")
    if not identical:
        raise SystemExit("bench: the two exports differ")


if __name__ == "__main__":
    main()
