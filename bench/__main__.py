"""The benchmark: every workload against its baseline, in one run, on one seeded data set (bench/README.md).

    uv run python -m bench [--quick] [--only W1,W3] [--profile] [--against VOUCHSAFE] [--timeout SECONDS]

DATABASE_URL names the PostgreSQL server, REDIS_URL the Redis server (loopback only;
defaults postgres://postgres@127.0.0.1:5432/test and redis://127.0.0.1:6379/0). The run
makes a database of its own, migrates it, seeds it through the project's own code paths
when a selected workload needs the data set, runs each workload (its subject A against its
baseline B, interleaved), prints the summary, and drops every database and Redis key it made.

Exit status: a full run exits 1 when a target is missed, a workload fails or the seed
takes over two minutes. --quick (the CI smoke step) exits 0 when every workload ran and its
correctness checks held: its sizes are too small for the ratios to mean anything, they are
printed all the same.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import secrets
import signal
import sys
import time
import traceback
from types import ModuleType

from bench import harness, seed, stores
from infra import database
from models import ORM_APPS

WORKLOADS = {
    "W1": "bench.w1_dashboard",
    "W2": "bench.w2_order",
    "W3": "bench.w3_redeem",
    "W4": "bench.w4_csv",
    "W5": "bench.w5_pdf",
    "W6": "bench.w6_expiry",
}
SEED_TARGET_SECONDS = 120.0
# A workload is stopped this long after the global deadline if it has not stopped by itself.
GRACE_SECONDS = 30.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, 2 rounds: the CI smoke step")
    p.add_argument("--only", default="", help="comma-separated workloads, e.g. W1,W3 (default: all)")
    p.add_argument("--profile", action="store_true", help="after its rounds, each workload with a profiler profiles A")
    p.add_argument(
        "--against",
        metavar="VOUCHSAFE",
        help="another checkout's vouchsafe executable: over HTTP, B is its serve (W3; reported, not judged)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        help="global deadline in seconds (default 240 with --quick, 300 with --profile too, else 3600)",
    )
    args = p.parse_args(argv)
    args.only = [k.strip().upper() for k in args.only.split(",") if k.strip()] or list(WORKLOADS)
    if unknown := set(args.only) - set(WORKLOADS):
        p.error(f"unknown workload(s) {', '.join(sorted(unknown))}; known: {', '.join(WORKLOADS)}")
    if args.against:
        if not os.access(args.against, os.X_OK):
            p.error(f"--against: {args.against} is not an executable")
        args.against = os.path.abspath(args.against)
    if args.timeout is None:
        # --quick: a bound against a hang, generous for a machine shared with other work (a minute or two idle).
        args.timeout = (240.0 + (60.0 if args.profile else 0.0)) if args.quick else 3600.0
    if not 10 <= args.timeout <= 4 * 3600:
        p.error("--timeout from 10 to 14400 seconds")
    return args


def selected(args: argparse.Namespace) -> list[tuple[str, ModuleType]]:
    """The workloads to run; with --against, those that take it (W3): naming another with --only is an error."""
    modules = [(key, importlib.import_module(WORKLOADS[key])) for key in args.only]
    if not args.against:
        return modules
    others = [key for key, m in modules if not getattr(m, "TAKES_AGAINST", False)]
    if others and args.only != list(WORKLOADS):
        raise SystemExit(
            f"bench: --against is for the workloads served over HTTP by vouchsafe serve (W3), not {others}"
        )
    return [(key, m) for key, m in modules if key not in others]


async def run_workload(key: str, module: ModuleType, ctx: harness.BenchContext) -> list[harness.Comparison]:
    """One workload, bounded by the global deadline (plus a grace to stop cleanly)."""
    print(f"\n==== {key} ({module.__name__}), {ctx.time_left():.0f} s left ====", flush=True)
    started = time.monotonic()
    try:
        async with asyncio.timeout(max(ctx.time_left(), 0) + GRACE_SECONDS):
            comparisons: list[harness.Comparison] = await module.run(ctx)
    finally:
        await database.close_db()  # a workload that left the ORM open does not leak into the next
    print(f"---- {key} took {time.monotonic() - started:.1f} s", flush=True)
    return comparisons


async def prepare(args: argparse.Namespace, url: str, code_key: bytes, needs_data: bool) -> list[str]:
    """The suite's database migrated, and seeded when a workload needs the data set; the problems found."""
    await database.migrate(url, apps=ORM_APPS)
    if not needs_data:
        return []
    plan = seed.SeedPlan.quick() if args.quick else seed.SeedPlan.full()
    await database.open_db(url, pool_size=6, apps=ORM_APPS)
    try:
        seeded = await seed.seed(plan, code_key)
    finally:
        await database.close_db()
    print(
        f"seeded {len(seeded.partners)} partners, {len(seeded.order_ids):,} orders, {seeded.vouchers:,} vouchers"
        f" (largest order {plan.largest:,}) in {seeded.seconds:.1f} s (target <= {SEED_TARGET_SECONDS:.0f} s)",
        flush=True,
    )
    if seeded.seconds > SEED_TARGET_SECONDS and not args.quick:
        return [f"seed took {seeded.seconds:.1f} s > {SEED_TARGET_SECONDS:.0f} s"]
    return []


async def suite(args: argparse.Namespace) -> int:
    started = time.monotonic()
    # SIGTERM (e.g. from `timeout`) cancels the run: the finally blocks stop what it started and drop its databases.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    server, redis = stores.server_url(), stores.redis_url()
    modules = selected(args)
    prefix = f"bench_{os.getpid()}_{secrets.token_hex(3)}"
    code_key = secrets.token_bytes(32)
    ctx = harness.BenchContext(
        server_url=server,
        database_url=stores.with_database(server, prefix),
        redis_url=redis,
        code_key=code_key,
        secret_key=secrets.token_bytes(32),
        prefix=prefix,
        quick=args.quick,
        deadline=started + args.timeout,
        profile=args.profile,
        against=args.against,
    )
    needs_data = any(getattr(m, "NEEDS_DATA_SET", True) for _, m in modules)
    problems: list[str] = []
    results: list[harness.Comparison] = []
    print(f"run {prefix}: {'quick' if args.quick else 'full'}, {', '.join(k for k, _ in modules)}", flush=True)
    try:
        async with stores.throwaway_database(server, prefix, migrate=False) as url:
            async with asyncio.timeout(args.timeout):
                problems += await prepare(args, url, code_key, needs_data)
            for key, module in modules:
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
        await stores.drop_keys(redis, prefix)
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
