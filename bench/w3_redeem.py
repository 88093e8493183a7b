"""W3, redeem under concurrency: 32 clients at once, each redeeming fresh codes of its own.

    uv run python -m bench.w3_redeem [--quick] [--rounds N] [--timeout S] [--profile] [--against VOUCHSAFE]

DATABASE_URL names the PostgreSQL server (default postgres://postgres@127.0.0.1:5432/test),
REDIS_URL the Redis (default redis://127.0.0.1:6379/0); loopback only. The suite's entry
point calls `run(ctx)` instead. Either way W3 works in a throwaway database of its own on
that server (dropped at the end) and a Redis namespace of its own (deleted at the end):
it creates accounts, ~40,000 vouchers and background jobs that would otherwise change the
data set the other workloads measure, and its statements are index lookups whose cost
does not depend on the table sizes. Everything is seeded through the services.

Three comparisons, rounds of A and B interleaved (bench.harness):
  service  A `services.redemption.redeem` from 32 tasks (Tortoise pool of 32)
           B raw asyncpg, 32 pooled connections: the same compare-and-set on the voucher
             row (by code digest) and the certificate request insert, in one transaction
           target A/B >= 0.5 (redeems/s)
  HTTP     A the `voucherRedeem` mutation against `vouchsafe serve` (PostgreSQL + Redis)
           B a bare Starlette endpoint calling the same service (bench/w3_bare.py)
           32 keep-alive clients; target A/B >= 0.3, p99 latency of A <= 50 ms, and
           exactly one winner per code when 8 clients redeem the same code at once
  HTTP x2  the same with `serve --workers 2` against the bare app on 2 processes: reported,
           full runs only (--quick, the CI smoke step, keeps to one process a server)
At the end every code handed to a round must be VALID_USED with exactly one request.
--against VOUCHSAFE: over HTTP, B is that executable's `serve` (another checkout's
.venv/bin/vouchsafe, e.g. of `git worktree add /tmp/old REF` after `uv sync` there) and
is sent the same mutation: the code before a change against the code after it, rounds
interleaved on one machine at one time (reported, not judged; one process a server).
--profile: after the HTTP rounds, py-spy records the one-process `vouchsafe serve` for
10 s of the same load and prints where its time goes (bench.spy).

Each client redeems codes of its own order, as customers of different partners do: the
redemption locks the code's order row, so codes of one order are redeemed one at a time
(the hot-order case is the contention check's). Clients come from addresses of their own
(127.0.1.x) and 8 share an account: the rate limit allows 10 lookups in flight per client
address and per account (successes are forgiven afterwards), and the bench must not be
throttled: a failed or throttled redeem makes the comparison a MISS.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from bench import spy, w3_http, w3_service
from bench.context import BenchContext
from bench.harness import Comparison, interleave, report
from bench.postgres import admin_execute, asyncpg_dsn, server_url, with_database
from infra import database
from infra.redis import open_redis
from models import ORM_APPS

CLIENTS = 32
SERVICE_TARGET = 0.5
HTTP_TARGET = 0.3
P99_TARGET_MS = 50.0
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class Sizes:
    rounds: int
    service: int  # redeems per client in a service round
    http: int  # redeems per client in an HTTP round
    warmup: int  # redeems per client before each side's first rounds, not counted
    contention: int  # codes each redeemed by 8 clients at once, per server
    two_processes: bool  # also `serve --workers 2` against the bare app on 2 processes
    profile: int = 0  # redeems per client kept for --profile's load
    # --against: B over HTTP is this `vouchsafe` executable's serve (another checkout's
    # .venv/bin/vouchsafe) instead of the bare app: old code against new, in one run.
    against: str | None = None

    def codes_per_client(self) -> int:
        pairs = 2 if self.two_processes else 1
        return self.rounds * 2 * (self.service + pairs * self.http) + 2 * (1 + pairs) * self.warmup + self.profile


FULL = Sizes(rounds=5, service=60, http=30, warmup=5, contention=40, two_processes=True)
# The CI smoke step: W3 in about 12 s with its servers' start-up, so one process a server.
QUICK = Sizes(rounds=2, service=4, http=2, warmup=1, contention=3, two_processes=False)


def p99_ms(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98] * 1000 if len(latencies) >= 2 else float("nan")


def spread(latencies: list[float]) -> str:
    """Mean, median, p90 and max in ms: whether a p99 is the whole distribution's or a few stalls'."""
    if len(latencies) < 2:
        return "n/a"
    p = statistics.quantiles(latencies, n=100)
    mean, top = statistics.fmean(latencies) * 1000, max(latencies) * 1000
    return f"mean {mean:.1f}, p50 {p[49] * 1000:.1f}, p90 {p[89] * 1000:.1f}, max {top:.1f} ms"


Side = Callable[[], Awaitable[float]]


async def service_comparison(fx: w3_service.Fixture, pool: asyncpg.Pool, sizes: Sizes) -> Comparison:
    a_tally, b_tally = w3_http.Tally(), w3_http.Tally()
    comparison = Comparison(
        workload=f"W3 redeem, service, {CLIENTS} concurrent tasks",
        a_label="services.redemption.redeem",
        b_label="raw asyncpg compare-and-set + request insert",
        unit="ops/s",
        higher_is_better=True,
        target=f"ratio >= {SERVICE_TARGET}",
        min_ratio=SERVICE_TARGET,
    )

    def a(per_client: int, tally: w3_http.Tally) -> Side:
        return lambda: w3_service.service_round(fx, fx.take(per_client), tally)

    def b(per_client: int, tally: w3_http.Tally) -> Side:
        return lambda: w3_service.baseline_round(pool, fx, fx.take(per_client), tally)

    # Warm-up, not counted: pool connections, prepared statements.
    await a(sizes.warmup, a_tally)()
    await b(sizes.warmup, b_tally)()
    a_tally.latencies.clear()
    b_tally.latencies.clear()
    comparison.rounds = await interleave(
        a(sizes.service, a_tally), b(sizes.service, b_tally), sizes.rounds, show=comparison
    )
    comparison.extra["p99 latency"] = (
        f"A {p99_ms(a_tally.latencies):.1f} ms, B {p99_ms(b_tally.latencies):.1f} ms",
        None,
    )
    _failures(comparison, a_tally, b_tally)
    return comparison


def _failures(comparison: Comparison, *tallies: w3_http.Tally) -> None:
    failures = [f for t in tallies for f in t.failures]
    total = sum(len(t.latencies) for t in tallies)
    first = f", first: {failures[0]}" if failures else ""
    comparison.extra["failed or throttled redeems"] = (f"{len(failures)} of {total}{first}", not failures)


async def http_comparison(
    fx: w3_service.Fixture, serve: w3_http.Server, bare: w3_http.Server, sizes: Sizes, *, reported_only: bool
) -> Comparison:
    processes = f", {serve.processes} processes each" if serve.processes > 1 else ""
    reported_only = reported_only or sizes.against is not None
    b_shape = w3_http.graphql_redeem if sizes.against else w3_http.bare_redeem
    comparison = Comparison(
        workload=f"W3 redeem over HTTP, {CLIENTS} clients{processes}",
        a_label="voucherRedeem, vouchsafe serve" + (f" --workers {serve.processes}" if serve.processes > 1 else ""),
        b_label=f"voucherRedeem, {sizes.against} serve" if sizes.against else "bare Starlette endpoint, same service",
        unit="ops/s",
        higher_is_better=True,
        target="report only" if reported_only else f"ratio >= {HTTP_TARGET}",
        min_ratio=None if reported_only else HTTP_TARGET,
    )
    a_tally, b_tally = w3_http.Tally(), w3_http.Tally()

    def side(server: w3_http.Server, shape: Any, per_client: int, tally: w3_http.Tally) -> Side:
        async def one_round() -> float:
            # The server's CPU a redeem: what the latency of a closed loop of 32 clients follows.
            batches, cpu, own = fx.take(per_client), server.cpu_seconds(), time.process_time()
            rate = await w3_http.http_round(server.port, shape, batches, fx.client_tokens, tally)
            tally.server_cpu += server.cpu_seconds() - cpu
            tally.client_cpu += time.process_time() - own
            tally.served += sum(len(b) for b in batches)
            return rate

        return one_round

    # Warm-up, not counted: connections, pools, Strawberry's parser and validation caches (every process).
    await side(serve, w3_http.graphql_redeem, sizes.warmup, a_tally)()
    await side(bare, b_shape, sizes.warmup, b_tally)()
    for tally in (a_tally, b_tally):
        tally.latencies.clear()
        tally.server_cpu, tally.client_cpu, tally.served = 0.0, 0.0, 0
    comparison.rounds = await interleave(
        side(serve, w3_http.graphql_redeem, sizes.http, a_tally),
        side(bare, b_shape, sizes.http, b_tally),
        sizes.rounds,
        show=comparison,
    )
    a_p99, b_p99 = p99_ms(a_tally.latencies), p99_ms(b_tally.latencies)
    comparison.extra["p99 latency"] = (
        f"A {a_p99:.1f} ms (target <= {P99_TARGET_MS:.0f} ms), B {b_p99:.1f} ms",
        None if reported_only else a_p99 <= P99_TARGET_MS,
    )
    comparison.extra["latency"] = (f"A {spread(a_tally.latencies)}; B {spread(b_tally.latencies)}", None)
    a_cpu, b_cpu = a_tally.cpu_ms_per_request(), b_tally.cpu_ms_per_request()
    comparison.extra["server CPU a redeem"] = (f"A {a_cpu:.2f} ms, B {b_cpu:.2f} ms (A/B {a_cpu / b_cpu:.2f})", None)
    comparison.extra["load client's CPU a redeem"] = (
        f"A {a_tally.client_ms_per_request():.2f} ms, B {b_tally.client_ms_per_request():.2f} ms",
        None,
    )
    _failures(comparison, a_tally, b_tally)
    codes = fx.take_contention(sizes.contention)
    winners = await w3_http.contention(serve.port, codes, fx.contender_tokens)
    comparison.extra["exactly one winner per code"] = (
        f"{len(codes)} codes x {len(fx.contender_tokens)} concurrent voucherRedeem;"
        f" winners per code {sorted(set(winners))}",
        all(w == 1 for w in winners),
    )
    return comparison


PROFILE_SECONDS = 10
PROFILE_BATCH = 10  # redeems per client between checks that py-spy is still recording


async def profile_serve(fx: w3_service.Fixture, serve: w3_http.Server, per_client: int, workdir: Path) -> None:
    """py-spy on the one-process server while 32 clients redeem over HTTP, as in the measured rounds."""
    pid = serve.process.pid if serve.process else None
    recording = spy.record(pid, workdir / "w3-http-profile.txt", PROFILE_SECONDS)
    if recording is None:
        return
    left, tally = per_client, w3_http.Tally()
    try:
        while recording.running() and left >= PROFILE_BATCH:
            batches = fx.take(PROFILE_BATCH)
            await w3_http.http_round(serve.port, w3_http.graphql_redeem, batches, fx.client_tokens, tally)
            left -= PROFILE_BATCH
    finally:
        recording.stop()  # out of codes before the end: what was recorded so far is written
    if tally.failures:
        raise RuntimeError(f"w3 profile: {len(tally.failures)} redeems failed, first: {tally.failures[0]}")
    recording.report(f"W3 profile of `vouchsafe serve` ({len(tally.latencies)} redeems under py-spy)")


async def service_phase(db_url: str, redis: Any, namespace: str, code_key: bytes, sizes: Sizes) -> Phase:
    """Seeding and the service rounds: the ORM (32 connections) and the baseline's pool (32) are open only here."""
    await database.open_db(db_url, pool_size=CLIENTS, apps=ORM_APPS)
    try:
        fx = await w3_service.seed(
            code_key=code_key,
            redis=redis,
            namespace=namespace,
            clients=CLIENTS,
            codes_per_client=sizes.codes_per_client(),
            contention_codes=(2 if sizes.two_processes else 1) * sizes.contention,
        )
        _progress("seeded")
        # The application's pool settings: no reset statement on release (infra.database).
        pool = await asyncpg.create_pool(
            asyncpg_dsn(db_url), min_size=CLIENTS, max_size=CLIENTS, connection_class=database.PooledConnection
        )
        try:
            comparison = await service_comparison(fx, pool, sizes)
            _progress("service rounds done")
            return fx, comparison
        finally:
            await pool.close()
    finally:
        await database.close_db()


Phase = tuple[w3_service.Fixture, Comparison]
_STARTED = time.monotonic()


def _progress(what: str) -> None:
    print(f"  W3 {time.monotonic() - _STARTED:5.1f} s: {what}", flush=True)


async def measure(db_url: str, redis_url: str, namespace: str, sizes: Sizes, deadline: float) -> list[Comparison]:
    """Migrate, seed, then the comparisons; servers and connections are stopped on every way out.

    PostgreSQL allows 100 connections here, shared with other work: one pair of servers
    runs at a time (up to 20 connections a process, 16 with two processes each).
    """
    with tempfile.TemporaryDirectory(prefix="w3-") as tmp:
        env = w3_http.server_env(db_url, redis_url, namespace, Path(tmp))
        procs = w3_http.servers(env, Path(tmp), sizes.against)
        redis = await open_redis(redis_url, queue_name=namespace)
        try:
            # The first pair starts at once: its start-up overlaps the migration and the seeding,
            # and it idles through the service rounds (opening the database needs no tables).
            with w3_http.running([procs["serve"], procs["bare"]]):
                await database.migrate(db_url, apps=ORM_APPS)
                _progress("migrated")
                code_key = base64.urlsafe_b64decode(env["VOUCHSAFE_CODE_KEY"])
                fx, service = await service_phase(db_url, redis, namespace, code_key, sizes)
                await procs["serve"].wait_ready(deadline)
                await procs["bare"].wait_ready(deadline)
                one = await http_comparison(fx, procs["serve"], procs["bare"], sizes, reported_only=False)
                _progress("HTTP rounds done")
                if sizes.profile:
                    await profile_serve(fx, procs["serve"], sizes.profile, Path(tmp))
            comparisons = [service, one]
            if sizes.two_processes:
                with w3_http.running([procs["serve2"], procs["bare2"]]):
                    await procs["serve2"].wait_ready(deadline)
                    await procs["bare2"].wait_ready(deadline)
                    _progress("servers of 2 processes ready")
                    two = await http_comparison(fx, procs["serve2"], procs["bare2"], sizes, reported_only=True)
                    one_a, two_a = (statistics.median(a for a, _ in c.rounds) for c in (one, two))
                    two.extra["A against 1 process"] = (
                        f"{two_a:.4g} vs {one_a:.4g} ops/s (x{two_a / one_a:.2f})",
                        None,
                    )
                    comparisons.append(two)
                    _progress("HTTP rounds (2 processes) done")
            once, handed_out = await w3_service.verify_exactly_once(db_url, fx)
            service.extra["every code used exactly once"] = (
                f"{once} of {handed_out} codes VALID_USED with one certificate request (all comparisons)",
                once == handed_out,
            )
            return comparisons
        except BaseException:
            for proc in procs.values():  # the logs go with the temporary directory
                print(f"--- {proc.name} log (last lines) ---\n{proc.log_tail()}", file=sys.stderr)
            raise
        finally:
            await _drop_namespace(redis, namespace)
            await redis.aclose()


async def _drop_namespace(redis: Any, namespace: str) -> None:
    """Rate-limit counters, the queue and job keys of this run (arq's keys carry the queue name)."""
    keys = [key async for key in redis.scan_iter(match=f"*{namespace}*", count=1000)]
    for start in range(0, len(keys), 1000):
        await redis.delete(*keys[start : start + 1000])


async def _in_own_database(server: str, redis_url: str, sizes: Sizes, deadline: float) -> list[Comparison]:
    name = f"bench_w3_{secrets.token_hex(4)}"
    db_url = with_database(server, name)
    namespace = f"bench-w3:{secrets.token_hex(4)}"
    global _STARTED
    _STARTED = time.monotonic()
    await admin_execute(server, f'CREATE DATABASE "{name}"')
    print(f"W3: database {name} on {urlsplit(server).hostname}, Redis namespace {namespace}, {sizes}", flush=True)
    try:
        async with asyncio.timeout(max(1.0, deadline - time.monotonic())):
            return await measure(db_url, redis_url, namespace, sizes, deadline)
    finally:
        await admin_execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def run(ctx: BenchContext) -> list[Comparison]:
    """W3 for the suite: a database of its own on ctx.server_url (see the module docstring), ctx's Redis.

    Opens and closes the ORM itself: call it with the ORM closed.
    """
    return await _in_own_database(ctx.server_url, ctx.redis_url, QUICK if ctx.quick else FULL, ctx.deadline)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.w3_redeem", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, 2 rounds, one process a server (CI smoke)")
    p.add_argument("--rounds", type=int, default=None, help="rounds of A and B per comparison (default 5, quick 2)")
    p.add_argument(
        "--timeout", type=float, default=None, help="give up after this many seconds (default 60 quick, 600)"
    )
    p.add_argument("--profile", action="store_true", help=f"py-spy the one-process server for {PROFILE_SECONDS} s")
    p.add_argument(
        "--against",
        metavar="VOUCHSAFE",
        help="over HTTP, B is this vouchsafe executable's serve (e.g. another checkout's .venv/bin/vouchsafe)",
    )
    args = p.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.profile:
        sizes = replace(sizes, profile=PROFILE_BATCH * 40)
    if args.rounds is not None:
        if not 1 <= args.rounds <= 50:
            p.error("--rounds from 1 to 50")
        sizes = replace(sizes, rounds=args.rounds)
    if args.against:
        if not os.access(args.against, os.X_OK):
            p.error(f"--against: {args.against} is not an executable")
        sizes = replace(sizes, against=os.path.abspath(args.against), two_processes=False)
    timeout = args.timeout or (60.0 if args.quick else 600.0)
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    if urlsplit(redis_url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("bench: runs against a loopback Redis only")
    started = time.monotonic()
    try:
        comparisons = asyncio.run(_in_own_database(server_url(), redis_url, sizes, started + timeout))
    except TimeoutError:
        print(f"bench: gave up after {timeout:.0f} s", file=sys.stderr)
        return 2
    ok = report(comparisons)
    print(f"W3 wall time {time.monotonic() - started:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
