"""W3, redeem under concurrency: 32 clients at once, each redeeming fresh codes of its own.

W3 works in a database of its own (dropped at the end) and a Redis namespace of its own: it
creates accounts, ~40,000 vouchers and background jobs that would otherwise change the data
set the other workloads measure, and its statements are index lookups whose cost does not
depend on the table sizes. Everything is seeded through the services.

The comparisons, rounds of A and B interleaved:
  service  A `services.redemption.redeem` from 32 tasks (Tortoise pool of 32)
           B raw asyncpg, 32 pooled connections: the same compare-and-set on the voucher
             row (by code digest) and the certificate request insert, in one transaction
           target A/B >= 0.5 (redeems/s)
  HTTP     A the `voucherRedeem` mutation against `vouchsafe serve` (PostgreSQL + Redis)
           B a bare Starlette endpoint calling the same service (bench/w3_baseline.py)
           32 keep-alive clients; target A/B >= 0.3, A's p99 <= 1.3x B's (issue 25; it
           was <= 50 ms), and exactly one winner per code when 8 clients redeem one code
  by id    the same, A sent as the stored document's id (issue 25): target A/B >= 0.8 and
           A's p99 <= 1.3x B's
  HTTP x2  the same with `serve --workers 2` against the bare app on 2 processes: reported,
           full runs only
  writes   by id against the bare endpoint doing the API's after-commit writes too (the
           change event, the cached answers retired: w3_baseline.create_app_with_writes):
           reported
At the end every code handed to a round must be VALID_USED with exactly one request.
--against VOUCHSAFE: over HTTP, B is that executable's `serve` (another checkout's
.venv/bin/vouchsafe) sent the same mutation: the code before a change against the code
after it, rounds interleaved on one machine at one time (reported, not judged; one
process a server). --profile: pyinstrument over more service rounds of A, and py-spy on
the one-process `vouchsafe serve` under the same HTTP load.

Each client redeems codes of its own order, as customers of different partners do: the
redemption locks the code's order row, so codes of one order are redeemed one at a time
(the hot-order case is the contention check's). Clients come from addresses of their own
(127.0.1.x) and 8 share an account: the rate limit allows 10 lookups in flight per client
address and per account (successes are forgiven afterwards), and the bench must not be
throttled: a failed or throttled redeem makes the comparison a MISS.
"""

from __future__ import annotations

import base64
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg

from bench import profilers, seed, w3_load, w3_service
from bench.harness import BenchContext, Comparison, Round, interleave
from bench.processes import ServerProcess, running, server_env, uvicorn_app, vouchsafe
from bench.stores import asyncpg_dsn, throwaway_database
from infra import database
from infra.redis import open_redis
from models import ORM_APPS

NEEDS_DATA_SET = False
TAKES_AGAINST = True
CLIENTS = 32
SERVICE_TARGET = 0.5
HTTP_TARGET = 0.3
BY_ID_TARGET = 0.8  # issue 25: voucherRedeem sent by id (a trusted document) against the bare endpoint
P99_TARGET = 1.3  # issue 25: A's p99 at most this times the bare endpoint's, in the same rounds (was <= 50 ms)
SPY_BATCH = 10  # redeems per client between checks that py-spy is still recording


@dataclass(frozen=True)
class Sizes:
    rounds: int
    service: int  # redeems per client in a service round
    http: int  # redeems per client in an HTTP round
    warmup: int  # redeems per client before each side's first rounds, not counted
    contention: int  # codes each redeemed by 8 clients at once, per server
    two_processes: bool  # also `serve --workers 2` against the bare app on 2 processes
    with_writes: bool  # also by id against the bare endpoint doing the after-commit writes
    spy_seconds: float  # --profile: py-spy on the one-process serve this long
    spy_codes: int  # --profile: redeems per client kept for it
    traced: tuple[int, int]  # --profile: pyinstrument over (rounds, redeems per client) of the service
    profile: bool = False
    against: str | None = None

    def http_comparisons(self) -> int:
        """By text, by id (, two processes) (, by id against the bare endpoint with writes)."""
        return 2 + self.two_processes + self.with_writes

    def codes_per_client(self) -> int:
        pairs = self.http_comparisons()
        codes = self.rounds * 2 * (self.service + pairs * self.http) + 2 * (1 + pairs) * self.warmup
        return codes + (self.spy_codes + self.traced[0] * self.traced[1] if self.profile else 0)


FULL = Sizes(5, 60, 30, 5, 40, True, True, spy_seconds=10, spy_codes=400, traced=(3, 60))
# The CI smoke step: W3 in about 15 s with its servers' start-up, so one process a server.
QUICK = Sizes(2, 4, 2, 1, 3, False, True, spy_seconds=3, spy_codes=30, traced=(1, 2))


def p99_ms(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98] * 1000 if len(latencies) >= 2 else float("nan")


def spread(latencies: list[float]) -> str:
    """Mean, median, p90 and max in ms: whether a p99 is the whole distribution's or a few stalls'."""
    if len(latencies) < 2:
        return "n/a"
    p = statistics.quantiles(latencies, n=100)
    mean, top = statistics.fmean(latencies) * 1000, max(latencies) * 1000
    return f"mean {mean:.1f}, p50 {p[49] * 1000:.1f}, p90 {p[89] * 1000:.1f}, max {top:.1f} ms"


async def service_comparison(fx: w3_service.Fixture, pool: asyncpg.Pool, sizes: Sizes, deadline: float) -> Comparison:
    a_tally, b_tally = w3_load.Tally(), w3_load.Tally()
    comparison = Comparison(
        workload=f"W3 redeem, service, {CLIENTS} concurrent tasks",
        a_label="services.redemption.redeem",
        b_label="raw asyncpg compare-and-set + request insert",
        unit="ops/s",
        higher_is_better=True,
        target=f"ratio >= {SERVICE_TARGET}",
        min_ratio=SERVICE_TARGET,
    )

    def a(per_client: int, tally: w3_load.Tally) -> Round:
        return lambda: w3_service.service_round(fx, fx.take(per_client), tally)

    def b(per_client: int, tally: w3_load.Tally) -> Round:
        return lambda: w3_service.baseline_round(pool, fx, fx.take(per_client), tally)

    # Warm-up, not counted: pool connections, prepared statements.
    await a(sizes.warmup, a_tally)()
    await b(sizes.warmup, b_tally)()
    a_tally.latencies.clear()
    b_tally.latencies.clear()
    comparison.rounds = await interleave(
        a(sizes.service, a_tally), b(sizes.service, b_tally), sizes.rounds, show=comparison, deadline=deadline
    )
    comparison.extra["p99 latency"] = (
        f"A {p99_ms(a_tally.latencies):.1f} ms, B {p99_ms(b_tally.latencies):.1f} ms",
        None,
    )
    _failures(comparison, a_tally, b_tally)
    if sizes.profile:
        rounds, per_client = sizes.traced
        traced = w3_load.Tally()
        with profilers.pyinstrument(f"W3 service, {rounds * per_client * CLIENTS} redeems", "bench-w3-service.txt"):
            for n in range(rounds):
                rate = await w3_service.service_round(fx, fx.take(per_client), traced)
                print(f"  W3 profiled round {n + 1}: {rate:.0f} redeems/s (slower: the sampler shares the core)")
        comparison.check("every profiled redeem succeeded", not traced.failures, f"{len(traced.failures)} failed")
    return comparison


def _failures(comparison: Comparison, *tallies: w3_load.Tally) -> None:
    failures = [f for t in tallies for f in t.failures]
    total = sum(len(t.latencies) for t in tallies)
    first = f", first: {failures[0]}" if failures else ""
    comparison.extra["failed or throttled redeems"] = (f"{len(failures)} of {total}{first}", not failures)


async def http_comparison(
    fx: w3_service.Fixture,
    serve: ServerProcess,
    bare: ServerProcess,
    sizes: Sizes,
    deadline: float,
    *,
    by_id: bool = False,
    with_writes: bool = False,
) -> Comparison:
    processes = f", {serve.processes} processes each" if serve.processes > 1 else ""
    reported_only = serve.processes > 1 or sizes.against is not None or with_writes
    bare_label = "bare Starlette endpoint, same service" + (" and after-commit writes" if with_writes else "")
    b_shape = w3_load.graphql_redeem if sizes.against else w3_load.bare_redeem
    a_shape = w3_load.graphql_redeem_by_id if by_id else w3_load.graphql_redeem
    ratio = BY_ID_TARGET if by_id else HTTP_TARGET
    comparison = Comparison(
        workload=f"W3 redeem over HTTP, {CLIENTS} clients{processes}{', by id' if by_id else ''}"
        + (", against the baseline with the writes after the commit" if with_writes else ""),
        a_label="voucherRedeem, vouchsafe serve"
        + (f" --workers {serve.processes}" if serve.processes > 1 else "")
        + (", the stored document's id (documentId)" if by_id else ""),
        b_label=f"voucherRedeem, {sizes.against} serve" if sizes.against else bare_label,
        unit="ops/s",
        higher_is_better=True,
        target="report only" if reported_only else f"ratio >= {ratio}",
        min_ratio=None if reported_only else ratio,
    )
    a_tally, b_tally = w3_load.Tally(), w3_load.Tally()

    def side(server: ServerProcess, shape: Any, per_client: int, tally: w3_load.Tally) -> Round:
        async def one_round() -> float:
            # The server's CPU a redeem: what the latency of a closed loop of 32 clients follows.
            batches, cpu, own = fx.take(per_client), server.cpu_seconds(), time.process_time()
            rate = await w3_load.http_round(server.port, shape, batches, fx.client_tokens, tally)
            tally.server_cpu += server.cpu_seconds() - cpu
            tally.client_cpu += time.process_time() - own
            tally.served += sum(len(b) for b in batches)
            return rate

        return one_round

    # Warm-up, not counted: connections, pools, Strawberry's parser and validation caches (every process).
    await side(serve, a_shape, sizes.warmup, a_tally)()
    await side(bare, b_shape, sizes.warmup, b_tally)()
    for tally in (a_tally, b_tally):
        tally.latencies.clear()
        tally.server_cpu, tally.client_cpu, tally.served = 0.0, 0.0, 0
    comparison.rounds = await interleave(
        side(serve, a_shape, sizes.http, a_tally),
        side(bare, b_shape, sizes.http, b_tally),
        sizes.rounds,
        show=comparison,
        deadline=deadline,
    )
    a_p99, b_p99 = p99_ms(a_tally.latencies), p99_ms(b_tally.latencies)
    # Relative, by text and by id (issue 25): an absolute bound judged the machine, B missed it too.
    comparison.extra["p99 latency"] = (
        f"A {a_p99:.1f} ms, B {b_p99:.1f} ms (A/B {a_p99 / b_p99:.2f}, target <= {P99_TARGET})",
        None if reported_only else a_p99 <= P99_TARGET * b_p99,
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
    winners = await w3_load.contention(serve.port, codes, fx.contender_tokens)
    comparison.check(
        "exactly one winner per code",
        bool(winners) and all(w == 1 for w in winners),
        f"{len(codes)} codes x {len(fx.contender_tokens)} concurrent voucherRedeem;"
        f" winners per code {sorted(set(winners))}",
    )
    return comparison


async def profile_serve(fx: w3_service.Fixture, serve: ServerProcess, sizes: Sizes) -> None:
    """py-spy on the one-process server while 32 clients redeem over HTTP, as in the measured rounds."""
    recording = profilers.record(serve.python_pid(), "bench-w3-serve.txt", sizes.spy_seconds)
    if recording is None:
        return
    left, tally = sizes.spy_codes, w3_load.Tally()
    try:
        while recording.running() and left >= SPY_BATCH:
            batch = min(SPY_BATCH, left)
            # The stored-document path (issue 25): the mutation sent by id.
            await w3_load.http_round(serve.port, w3_load.graphql_redeem_by_id, fx.take(batch), fx.client_tokens, tally)
            left -= batch
    finally:
        recording.stop()  # out of codes before the end: what was recorded so far is written
    if tally.failures:
        raise RuntimeError(f"w3 profile: {len(tally.failures)} redeems failed, first: {tally.failures[0]}")
    recording.report(f"W3 profile of `vouchsafe serve` ({len(tally.latencies)} redeems under py-spy)")


def servers(env: dict[str, str], log_dir: Path, against: str | None) -> dict[str, ServerProcess]:
    """`vouchsafe serve` and the bare app (or `against`'s serve), on one process and on two."""
    serve = [vouchsafe(), "serve"]
    bare = [against, "serve"] if against else uvicorn_app("bench.w3_baseline:create_app")
    writes = uvicorn_app("bench.w3_baseline:create_app_with_writes")
    # Two processes share the 32 clients: 16 connections each (the default 20 for one).
    env2 = {**env, "VOUCHSAFE_DB_POOL_SIZE": "16"}
    return {
        "serve": ServerProcess("w3-serve", serve, env, log_dir),
        "bare": ServerProcess("w3-baseline", bare, env, log_dir),
        "writes": ServerProcess("w3-baseline-writes", writes, env, log_dir),
        "serve2": ServerProcess("w3-serve-2p", serve, env2, log_dir, processes=2),
        "bare2": ServerProcess("w3-baseline-2p", bare, env2, log_dir, processes=2),
    }


async def service_phase(
    ctx: BenchContext, db_url: str, redis: Any, sizes: Sizes
) -> tuple[w3_service.Fixture, Comparison]:
    """Seeding and the service rounds: the ORM (32 connections) and the baseline's pool (32) are open only here."""
    await database.open_db(db_url, pool_size=CLIENTS, apps=ORM_APPS)
    try:
        fx = await w3_service.seed(
            code_key=ctx.code_key,
            redis=redis,
            namespace=ctx.name("w3"),
            clients=CLIENTS,
            codes_per_client=sizes.codes_per_client(),
            contention_codes=sizes.http_comparisons() * sizes.contention,
        )
        await seed.trusted(w3_load.REDEEM_MUTATION)
        print(f"  W3: seeded {CLIENTS} orders of {sizes.codes_per_client():,} codes", flush=True)
        # The application's pool settings: no reset statement on release (infra.database).
        pool = await asyncpg.create_pool(
            asyncpg_dsn(db_url), min_size=CLIENTS, max_size=CLIENTS, connection_class=database.PooledConnection
        )
        try:
            return fx, await service_comparison(fx, pool, sizes, ctx.deadline)
        finally:
            await pool.close()
    finally:
        await database.close_db()


async def run(ctx: BenchContext) -> list[Comparison]:
    """Migrate, seed, then the comparisons; servers and connections are stopped on every way out.

    PostgreSQL allows 100 connections here, shared with other work: one pair of servers
    runs at a time (up to 20 connections a process, 16 with two processes each).
    """
    sizes = replace(QUICK if ctx.quick else FULL, profile=ctx.profile)
    if ctx.against:
        sizes = replace(sizes, against=ctx.against, two_processes=False, with_writes=False)
    namespace = ctx.name("w3")
    b64 = base64.urlsafe_b64encode
    async with throwaway_database(ctx.server_url, namespace, migrate=False) as db_url:
        with tempfile.TemporaryDirectory(prefix="bench-w3-") as tmp:
            env = server_env(
                DATABASE_URL=db_url,
                REDIS_URL=ctx.redis_url,
                VOUCHSAFE_QUEUE_NAME=namespace,
                VOUCHSAFE_DATA_DIR=tmp,
                VOUCHSAFE_SECRET_KEY=b64(ctx.secret_key).decode(),
                VOUCHSAFE_CODE_KEY=b64(ctx.code_key).decode(),
                # The seeding's outbox rows are marked done; the relay's periodic sweep should not queue them first.
                VOUCHSAFE_OUTBOX_SWEEP_SECONDS="3600",
            )
            procs = servers(env, Path(tmp), sizes.against)
            redis = await open_redis(ctx.redis_url, queue_name=namespace)
            try:
                # The first pair starts at once: its start-up overlaps the migration and the seeding,
                # and it idles through the service rounds (opening the database needs no tables).
                with running(procs["serve"], procs["bare"]) as (serve, bare):
                    await database.migrate(db_url, apps=ORM_APPS)
                    fx, service = await service_phase(ctx, db_url, redis, sizes)
                    await serve.wait_ready(ctx.deadline)
                    await bare.wait_ready(ctx.deadline)
                    one = await http_comparison(fx, serve, bare, sizes, ctx.deadline)
                    by_id = await http_comparison(fx, serve, bare, sizes, ctx.deadline, by_id=True)
                    if sizes.profile:
                        await profile_serve(fx, serve, sizes)
                comparisons = [service, one, by_id]
                if sizes.with_writes:
                    with running(procs["serve"], procs["writes"]) as (serve, writes):
                        await serve.wait_ready(ctx.deadline)
                        await writes.wait_ready(ctx.deadline)
                        comparisons.append(
                            await http_comparison(fx, serve, writes, sizes, ctx.deadline, by_id=True, with_writes=True)
                        )
                if sizes.two_processes:
                    with running(procs["serve2"], procs["bare2"]) as (serve, bare):
                        await serve.wait_ready(ctx.deadline)
                        await bare.wait_ready(ctx.deadline)
                        two = await http_comparison(fx, serve, bare, sizes, ctx.deadline)
                        one_a, two_a = (statistics.median(a for a, _ in c.rounds) for c in (one, two))
                        two.extra["A against 1 process"] = (
                            f"{two_a:.4g} vs {one_a:.4g} ops/s (x{two_a / one_a:.2f})",
                            None,
                        )
                        comparisons.append(two)
                once, handed_out = await w3_service.verify_exactly_once(db_url, fx)
                service.check(
                    "every code used exactly once",
                    once == handed_out,
                    f"{once} of {handed_out} codes VALID_USED with one certificate request (all comparisons)",
                )
                return comparisons
            finally:
                await redis.aclose()
