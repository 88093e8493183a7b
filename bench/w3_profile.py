"""Where W3's service time goes: `services.redemption.redeem` from 32 tasks under pyinstrument.

    uv run python -m bench.w3_profile [--rounds N] [--per-client N] [--out FILE]

The same seeding and rounds as W3's service comparison (bench.w3_service), without the
baseline: a throwaway database and Redis namespace of its own on DATABASE_URL/REDIS_URL
(loopback only), a warm-up round, then the profiled rounds back to back. It prints each
round's redeems/s (slower than unprofiled: the sampler shares the core), the functions
taking the most time of their own, and writes the whole call tree to --out. It uses only
`w3_service`'s seeding and round, so the same file profiles an older checkout's code
(the method behind "before and after" in the README's "Performance").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from pyinstrument import Profiler

from bench import w3_service
from bench.postgres import LOOPBACK, admin_execute, server_url, with_database
from bench.w3_http import Tally
from bench.w3_redeem import CLIENTS, DEFAULT_REDIS_URL, _drop_namespace
from infra import database
from infra.redis import open_redis
from models import ORM_APPS

TOP = 30


async def profile(db_url: str, redis_url: str, rounds: int, per_client: int) -> Profiler:
    namespace = f"bench-w3p:{secrets.token_hex(4)}"
    redis = await open_redis(redis_url, queue_name=namespace)
    try:
        await database.migrate(db_url, apps=ORM_APPS)
        await database.open_db(db_url, pool_size=CLIENTS, apps=ORM_APPS)
        try:
            fx = await w3_service.seed(
                code_key=secrets.token_bytes(32),
                redis=redis,
                namespace=namespace,
                clients=CLIENTS,
                codes_per_client=(rounds + 1) * per_client,
                contention_codes=1,
            )
            tally = Tally()
            await w3_service.service_round(fx, fx.take(per_client), tally)  # warm-up: connections, caches
            # Not async-aware on purpose: the event loop's idle time (waiting on PostgreSQL and
            # Redis) shows as the loop's select, beside the CPU of every task.
            profiler = Profiler(interval=0.0005, async_mode="disabled")
            profiler.start()
            for n in range(rounds):
                rate = await w3_service.service_round(fx, fx.take(per_client), tally)
                print(f"  round {n + 1}: {rate:.0f} redeems/s (profiled)", flush=True)
            profiler.stop()
        finally:
            await database.close_db()
    finally:
        await _drop_namespace(redis, namespace)
        await redis.aclose()
    if tally.failures:
        raise SystemExit(f"w3 profile: {len(tally.failures)} redeems failed, first: {tally.failures[0]}")
    return profiler


def show(profiler: Profiler, redeems: int, out: Path) -> None:
    flat = profiler.output_text(flat=True, show_all=False).splitlines()
    print(f"\nSelf time, top {TOP} (of {redeems} redeems):")
    print("\n".join(flat[: TOP + 6]))
    out.write_text(profiler.output_text(show_all=False))
    print(f"\nCall tree: {out}")


async def _in_own_database(server: str, redis_url: str, rounds: int, per_client: int) -> Profiler:
    name = f"bench_w3p_{secrets.token_hex(4)}"
    await admin_execute(server, f'CREATE DATABASE "{name}"')
    print(f"W3 profile: database {name}, {rounds} rounds x {per_client} redeems x {CLIENTS} tasks", flush=True)
    try:
        async with asyncio.timeout(600):
            return await profile(with_database(server, name), redis_url, rounds, per_client)
    finally:
        await admin_execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.w3_profile", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="profiled rounds (default 3)")
    p.add_argument("--per-client", type=int, default=60, help="redeems per task and round (default 60)")
    p.add_argument("--out", type=Path, default=Path("w3-profile.txt"), help="the call tree (default ./w3-profile.txt)")
    args = p.parse_args(argv)
    if not (1 <= args.rounds <= 20 and 1 <= args.per_client <= 500):
        p.error("--rounds from 1 to 20, --per-client from 1 to 500")
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    if urlsplit(redis_url).hostname not in LOOPBACK:
        raise SystemExit("bench: runs against a loopback Redis only")
    started = time.monotonic()
    profiler = asyncio.run(_in_own_database(server_url(), redis_url, args.rounds, args.per_client))
    show(profiler, args.rounds * args.per_client * CLIENTS, args.out)
    print(f"W3 profile wall time {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
