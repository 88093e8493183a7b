"""The benchmark suite: one seeded data set, every workload against its baseline, one report.

    uv run python -m bench [--quick] [--only W2,W4,...] [--timeout SECONDS]

DATABASE_URL names the PostgreSQL server (default postgres://postgres@127.0.0.1:5432/test,
loopback only); REDIS_URL the Redis server (default redis://127.0.0.1:6379/0, loopback
only). The suite creates a database of its own, migrates it, seeds it through the
project's own code paths (50 partners, 2,000 orders of lognormal size, one of exactly
100,000 vouchers, 1,000,000 vouchers in all; --quick: 5, 50, 2,000 and 20,000), runs
each workload (its subject A against its baseline B, interleaved), prints the summary
and drops the database.

Exit status: a full run exits 1 when a target is missed, a workload fails or the seed
takes over two minutes. --quick (the CI smoke step, the whole suite under a minute)
exits 0 when every workload ran and its correctness checks held: its sizes are too
small for the ratios to mean anything, they are printed all the same.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import os
import secrets
import signal
import sys
import time
import traceback
from types import ModuleType
from urllib.parse import urlsplit

from bench import harness
from bench.context import BenchContext
from bench.postgres import LOOPBACK, admin_execute, server_url, with_database
from bench.seed import SeedPlan, seed
from infra import database
from models import ORM_APPS

# (key, module, written by this suite's core): the others come from their own branch and are run if present.
WORKLOADS = [
    ("W1", "bench.w1_dashboard", False),
    ("W2", "bench.w2_order", True),
    ("W3", "bench.w3_redeem", False),
    ("W4", "bench.w4_csv", True),
    ("W5", "bench.w5_pdf", True),
    ("W6", "bench.w6_expiry", True),
]
SEED_TARGET_SECONDS = 120.0
# A workload is stopped this long after the global deadline if it has not stopped by itself.
GRACE_SECONDS = 30.0
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, 2 rounds, the whole suite under a minute")
    p.add_argument("--only", default="", help="comma-separated workloads, e.g. W2,W4 (default: all)")
    p.add_argument("--timeout", type=float, help="global deadline in seconds (default 75 with --quick, else 3600)")
    args = p.parse_args(argv)
    known = {key for key, _, _ in WORKLOADS}
    args.only = [k.strip().upper() for k in args.only.split(",") if k.strip()]
    if unknown := set(args.only) - known:
        p.error(f"unknown workload(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    if args.timeout is None:
        args.timeout = 75.0 if args.quick else 3600.0
    if not 10 <= args.timeout <= 4 * 3600:
        p.error("--timeout from 10 to 14400 seconds")
    return args


def redis_url() -> str:
    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS
    if urlsplit(url).hostname not in LOOPBACK:
        raise SystemExit(f"bench: runs against a loopback Redis only, not {urlsplit(url).hostname!r}")
    return url


def load(module: str, required: bool) -> ModuleType | None:
    if importlib.util.find_spec(module) is None:
        if required:
            raise SystemExit(f"bench: workload module {module} is missing")
        return None
    return importlib.import_module(module)


async def run_workload(key: str, module: ModuleType, ctx: BenchContext) -> list[harness.Comparison]:
    """One workload, bounded by the global deadline (plus a grace to stop cleanly); its database use is its own."""
    print(f"\n==== {key} ({module.__name__}), {ctx.time_left():.0f} s left ====", flush=True)
    started = time.monotonic()
    try:
        async with asyncio.timeout(max(ctx.time_left(), 0) + GRACE_SECONDS):
            comparisons: list[harness.Comparison] = await module.run(ctx)
    finally:
        await database.close_db()  # a workload that left the ORM open does not leak into the next
    print(f"---- {key} took {time.monotonic() - started:.1f} s", flush=True)
    return comparisons


async def suite(args: argparse.Namespace) -> int:
    started = time.monotonic()
    # SIGTERM (e.g. from `timeout`) cancels the run: the finally blocks stop what it started and drop its databases.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    server, redis = server_url(), redis_url()
    name = f"bench_core_{os.getpid()}_{secrets.token_hex(3)}"
    url = with_database(server, name)
    plan = SeedPlan.quick() if args.quick else SeedPlan.full()
    code_key, secret_key = secrets.token_bytes(32), secrets.token_bytes(32)
    selected = [(k, m, core) for k, m, core in WORKLOADS if not args.only or k in args.only]
    modules = [(k, load(m, core)) for k, m, core in selected]
    problems: list[str] = []
    results: list[harness.Comparison] = []
    await admin_execute(server, f'CREATE DATABASE "{name}"')
    print(f"database {name} on {urlsplit(server).hostname}; {'quick' if args.quick else 'full'} run", flush=True)
    try:
        async with asyncio.timeout(args.timeout):
            await database.migrate(url, apps=ORM_APPS)
            await database.open_db(url, pool_size=6, apps=ORM_APPS)
            try:
                seeded = await seed(plan, code_key)
            finally:
                await database.close_db()
        print(
            f"seeded {len(seeded.partners)} partners, {len(seeded.order_ids):,} orders, {seeded.vouchers:,} vouchers"
            f" (largest order {plan.largest:,}) in {seeded.seconds:.1f} s (target <= {SEED_TARGET_SECONDS:.0f} s)",
            flush=True,
        )
        if seeded.seconds > SEED_TARGET_SECONDS and not args.quick:
            problems.append(f"seed took {seeded.seconds:.1f} s > {SEED_TARGET_SECONDS:.0f} s")
        ctx = BenchContext(
            server_url=server,
            database_url=url,
            redis_url=redis,
            code_key=code_key,
            secret_key=secret_key,
            quick=args.quick,
            deadline=started + args.timeout,
        )
        for key, module in modules:
            if module is None:
                print(f"\n==== {key}: not present on this branch, skipped", flush=True)
                continue
            if ctx.time_left() <= 0:
                problems.append(f"{key}: not run, past the deadline")
                continue
            try:
                comparisons = await run_workload(key, module, ctx)
            except TimeoutError:
                problems.append(f"{key}: stopped, {GRACE_SECONDS:.0f} s past the deadline")
                continue
            except Exception as exc:
                traceback.print_exc()
                problems.append(f"{key}: failed: {type(exc).__name__}: {exc}")
                continue
            if not comparisons:
                problems.append(f"{key}: measured nothing")
            results.extend(comparisons)
    finally:
        await admin_execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    targets_met = harness.report(results)
    for problem in problems:
        print(f"PROBLEM {problem}")
    wall = time.monotonic() - started
    if args.quick:
        ok = not problems and harness.all_correct(results)
        print(f"\nquick run: {wall:.1f} s; every workload ran and its checks held: {ok} (ratios are not judged)")
    else:
        ok = not problems and targets_met
        print(f"\nfull run: {wall:.1f} s; every target met: {ok}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(suite(args))
    except TimeoutError:
        print(f"bench: the seed did not finish within --timeout {args.timeout:.0f} s", file=sys.stderr)
        return 1
    except asyncio.CancelledError:
        print("bench: stopped by SIGTERM", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
