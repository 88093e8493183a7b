"""Bulk voucher orders: the order service against a raw COPY of the same vouchers.

Run by hand, against a local PostgreSQL server (never anything but loopback):

    uv run python -m bench.bulk_order [--sizes 1000,10000] [--rounds 3]

DATABASE_URL names the server (default postgres://postgres@127.0.0.1:5432/test);
the benchmark creates a database of its own there and drops it at the end.

For each size N, rounds A and B alternate (A first in even rounds, B first in odd):
  A  the service: `place_order` of one line of N vouchers paid by balance, timed end
     to end (quote, debit, order, line, vouchers, history, outbox, in one transaction);
  B  the baseline: raw asyncpg in one transaction: generate N codes, seal them
     (HMAC + AES-GCM) and COPY them into the voucher table for an existing line.
It prints every round, then per size the median vouchers/s of A and of B and the
median of the per-round ratios A/B (throughput of A over throughput of B; the
target is >= 0.5). `--profile` adds a cProfile of one more A round of the largest size.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import secrets
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import asyncpg
from tortoise.transactions import in_transaction

from bench.postgres import admin_execute, asyncpg_dsn, server_url, with_database
from infra import database
from models import ORM_APPS, LedgerEntryKind, PaymentMethod, Role, VoucherOrderLine, VoucherStatus
from services import accounts, catalogue, codes, finance, staff
from services.actors import Actor
from services.catalogue import LineRequest
from services.ledger import post_entry
from services.orders import OrderRequest, expiry_of, place_order
from services.payments import SandboxGateway

PUBLIC_URL = "http://127.0.0.1:8000"
PRODUCT = "BASIC_OV"
TARGET_RATIO = 0.5
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


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError("comma-separated whole numbers, e.g. 1000,10000") from exc
    if not sizes or not all(1 <= s <= catalogue.MAX_VOUCHERS for s in sizes):
        raise argparse.ArgumentTypeError(f"sizes from 1 to {catalogue.MAX_VOUCHERS}")
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.bulk_order", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=_sizes, default=[1_000, 10_000], help="vouchers an order (default 1000,10000)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of A and B per size (default 3)")
    p.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds (default 600)")
    p.add_argument("--profile", action="store_true", help="cProfile one more A round of the largest size")
    args = p.parse_args(argv)
    if not 1 <= args.rounds <= 50:
        p.error("--rounds from 1 to 50")
    return args


@dataclass(frozen=True)
class Fixture:
    actor: Actor
    account_id: int
    cipher: codes.CodeCipher
    gateway: SandboxGateway


def _request(quantity: int) -> OrderRequest:
    return OrderRequest(
        lines=[LineRequest(PRODUCT, quantity=quantity, validity_years=1, fqdns=1, wildcards=0)],
        payment_method=PaymentMethod.ACCOUNT_BALANCE,
    )


async def set_up(sizes: list[int], rounds: int) -> Fixture:
    """A partner paying by balance, funded for every round."""
    user = await accounts.sign_up(
        email=f"bench-{secrets.token_hex(5)}@example.com",
        password=secrets.token_urlsafe(15),
        account_name="Bench Partner",
        locale="en",
        public_url=PUBLIC_URL,
    )
    actor = Actor(user_id=user.id, account_id=user.account_id, role=Role.ADMIN)
    account_id = actor.require_account()
    await staff.set_partner(account_id=account_id, enabled=True)
    await finance.update_settings(actor=actor, bill_to_balance_enabled=True)
    unit = (await catalogue.quote(_request(1).lines, currency="USD")).total
    # The rounds, the profile, the warm-up, and the one-voucher orders the baseline adds its vouchers to.
    vouchers = sum(sizes) * (rounds + 1) + min(sizes) + len(sizes) * rounds + 1
    async with in_transaction() as conn:
        await post_entry(conn, account_id=account_id, kind=LedgerEntryKind.DEPOSIT, amount=unit * vouchers)
    return Fixture(actor, account_id, codes.CodeCipher(secrets.token_bytes(32)), SandboxGateway())


async def baseline_target(fx: Fixture) -> tuple[int, int]:
    """A new order and line (untimed) for B's vouchers, so B appends to the indexes where A does."""
    order = await place_order(
        actor=fx.actor, request=_request(1), gateway=fx.gateway, cipher=fx.cipher, public_url=PUBLIC_URL
    )
    line = await VoucherOrderLine.get(order_id=order.id)
    return order.id, line.id


async def service_round(fx: Fixture, size: int) -> float:
    """A: one order of `size` vouchers through the service, end to end."""
    started = time.perf_counter()
    order = await place_order(
        actor=fx.actor, request=_request(size), gateway=fx.gateway, cipher=fx.cipher, public_url=PUBLIC_URL
    )
    elapsed = time.perf_counter() - started
    assert order.voucher_count == size
    return elapsed


async def baseline_round(conn: asyncpg.Connection, fx: Fixture, size: int) -> float:
    """B: generate, seal and COPY `size` vouchers in one raw transaction."""
    order_id, line_id = await baseline_target(fx)
    started = time.perf_counter()
    now = datetime.now(UTC)
    expires_at = expiry_of(now)
    async with conn.transaction():
        sealed = [fx.cipher.seal(codes.generate()) for _ in range(size)]
        records = [
            (
                fx.account_id,
                order_id,
                line_id,
                s.digest,
                s.ciphertext,
                s.hint,
                VoucherStatus.VALID_UNUSED.value,
                expires_at,
                now,
            )
            for s in sealed
        ]
        await conn.copy_records_to_table("voucher", records=records, columns=VOUCHER_COLUMNS)
    return time.perf_counter() - started


@dataclass(frozen=True)
class Round:
    size: int
    number: int
    service: float
    baseline: float

    @property
    def ratio(self) -> float:
        # Throughput of A over throughput of B, for the same number of vouchers.
        return self.baseline / self.service


def _rate(size: int, seconds: float) -> float:
    return size / seconds


async def measure(fx: Fixture, raw: asyncpg.Connection, sizes: list[int], rounds: int) -> list[Round]:
    # Warm-up, not counted: imports, prepared statements, pool connections.
    await service_round(fx, min(sizes))
    await baseline_round(raw, fx, min(sizes))
    results = []
    for number in range(1, rounds + 1):
        for size in sizes:
            if number % 2:
                a = await service_round(fx, size)
                b = await baseline_round(raw, fx, size)
            else:
                b = await baseline_round(raw, fx, size)
                a = await service_round(fx, size)
            r = Round(size, number, a, b)
            results.append(r)
            print(
                f"N={size:>6} round {number}:  A {a * 1000:8.1f} ms {_rate(size, a):9,.0f} vouchers/s"
                f"   B {b * 1000:8.1f} ms {_rate(size, b):9,.0f} vouchers/s   A/B {r.ratio:.2f}",
                flush=True,
            )
    return results


def summarise(results: list[Round], sizes: list[int]) -> bool:
    print()
    print(f"{'N':>6}  {'median A vouchers/s':>20}  {'median B vouchers/s':>20}  {'median A/B':>10}")
    ok = True
    for size in sizes:
        rows = [r for r in results if r.size == size]
        a = statistics.median(_rate(size, r.service) for r in rows)
        b = statistics.median(_rate(size, r.baseline) for r in rows)
        ratio = statistics.median(r.ratio for r in rows)
        verdict = "ok" if ratio >= TARGET_RATIO else f"BELOW {TARGET_RATIO}"
        ok = ok and ratio >= TARGET_RATIO
        print(f"{size:>6}  {a:>20,.0f}  {b:>20,.0f}  {ratio:>10.2f}  {verdict}")
    return ok


async def profile(fx: Fixture, size: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    elapsed = await service_round(fx, size)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(r"services|models|tortoise|asyncpg", 30)
    print(f"\ncProfile of one A round, N={size} ({elapsed * 1000:.1f} ms):")
    print(out.getvalue())


async def run(args: argparse.Namespace) -> bool:
    server = server_url()
    name = f"bench_{secrets.token_hex(4)}"
    url = with_database(server, name)
    await admin_execute(server, f'CREATE DATABASE "{name}"')
    print(f"database {name} on {urlsplit(server).hostname}; sizes {args.sizes}, {args.rounds} rounds", flush=True)
    try:
        async with asyncio.timeout(args.timeout):
            await database.migrate(url, apps=ORM_APPS)
            await database.open_db(url, pool_size=5, apps=ORM_APPS)
            raw = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
            try:
                fx = await set_up(args.sizes, args.rounds)
                results = await measure(fx, raw, args.sizes, args.rounds)
                ok = summarise(results, args.sizes)
                if args.profile:
                    await profile(fx, max(args.sizes))
                return ok
            finally:
                await raw.close()
                await database.close_db()
    finally:
        await admin_execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        ok = asyncio.run(run(args))
    except TimeoutError:
        print(f"bench: gave up after {args.timeout:.0f} s", file=sys.stderr)
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
