"""W1: the partner dashboard over HTTP, against a minimal Strawberry schema fed by one SQL statement.

    uv run python -m bench.w1_dashboard [--quick] [--profile]

Standalone, it creates a throwaway database on the loopback PostgreSQL server
(DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test) and uses the loopback
Redis (REDIS_URL, default redis://127.0.0.1:6379/0) under a queue name of its own;
under the suite (bench/__main__.py) it runs on the seeded database it is handed.
Either way it adds one partner of its own through the services (20 orders of 60
vouchers; --quick: 10 of 25) and reads that partner's dashboard:

  A  `vouchsafe serve` (a subprocess on a free loopback port, PostgreSQL + Redis);
  B  bench/w1_baseline.py under uvicorn: the same document answered with the same JSON
     by a one-statement Strawberry schema (checked: both answer the same data).
Rounds alternate A and B; a round sends the same dashboard request R times, 2 at a time (the
server always has the next one waiting).
Figures per round: requests/s, server CPU per request (utime + stime of the server's
process tree from /proc, before and after the round) and SQL statements per request,
counted on the wire by a proxy each server reaches PostgreSQL through (bench/pgcount.py).
Targets: CPU per request A/B <= 1.3 and <= 3 statements per request.

"W1 polled" times (latency, one request at a time) the same dashboard asked again with
nothing changed (A) against the first one after a change (B: a 1.00 deposit just before,
which the answer must show). Target >= 10x faster (the response cache, answered before GraphQL runs).
With `vouchsafe serve --workers N` available, the dashboard is also measured on two
processes each side.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import inspect
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from tortoise import connections

from bench import w1_load
from bench.context import BenchContext
from bench.harness import Comparison, interleave, report
from bench.pgcount import StatementCounter
from bench.postgres import admin_execute, asyncpg_dsn, server_url, with_database
from bench.processes import ServerProcess, free_port, uv
from infra import database
from models import ORM_APPS

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
CPU_TARGET = 1.3
STATEMENT_TARGET = 3
POLLED_TARGET = 0.1


def _sizes(quick: bool) -> dict[str, int]:
    # Many short rounds rather than a few long ones: the machine is shared and its load comes
    # in bursts, which two back-to-back halves of a short round meet alike. An even number: as
    # many rounds with A first as with B first (the second of a pair measured a little slower).
    if quick:
        return {
            "orders": 10,
            "vouchers": 20,
            "per_order": 25,
            "rounds": 2,
            "requests": 20,
            "polled": 4,
            "polled_rounds": 2,
        }
    return {
        "orders": 20,
        "vouchers": 50,
        "per_order": 60,
        "rounds": 16,
        "requests": 50,
        "polled": 15,
        "polled_rounds": 6,
    }


def _b64(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode()


def _server_env(ctx: BenchContext, database: str, queue: str, data_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOUCHSAFE_")}
    env.update(
        DATABASE_URL=database,
        REDIS_URL=ctx.redis_url,
        VOUCHSAFE_ENV="production",
        VOUCHSAFE_SECRET_KEY=_b64(ctx.secret_key),
        VOUCHSAFE_CODE_KEY=_b64(ctx.code_key),
        VOUCHSAFE_DATA_DIR=str(data_dir),
        VOUCHSAFE_QUEUE_NAME=queue,
        VOUCHSAFE_PUBLIC_URL=f"http://127.0.0.1:{port}",
        # The periodic outbox sweep is background work, not the dashboard's: kept out of the
        # statement count (the relay after each commit still runs; reads commit nothing).
        VOUCHSAFE_OUTBOX_SWEEP_SECONDS="3600",
    )
    return env


def _through(proxy: StatementCounter, url: str) -> str:
    """The database URL with its host and port replaced by the counting proxy's."""
    parts = urlsplit(url)
    return parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}").geturl()


def _serve_supports_workers() -> bool:
    """Whether this branch's `vouchsafe serve` takes --workers (another branch adds it)."""
    import cli

    for action in cli.parser()._actions:
        if isinstance(action, argparse._SubParsersAction) and "serve" in action.choices:
            return "--workers" in action.choices["serve"].format_help()
    return False


class Servers:
    """The A and B servers of one comparison, each behind its own statement-counting proxy."""

    def __init__(self, ctx: BenchContext, queue: str, workdir: Path, workers: int = 1) -> None:
        self.ctx, self.queue, self.workdir, self.workers = ctx, queue, workdir, workers
        self.proxies = (StatementCounter(), StatementCounter())
        self.a: ServerProcess | None = None
        self.b: ServerProcess | None = None
        self.started = 0.0

    async def launch(self) -> None:
        """Both servers started side by side (see `ready`)."""
        self.started = time.monotonic()
        pa, pb = [await p.start() for p in self.proxies]
        port_a, port_b = free_port(), free_port()
        argv_a = [uv(), "run", "vouchsafe", "serve", "--host", "127.0.0.1", "--port", str(port_a)]
        argv_b = [uv(), "run", "python", "-m", "bench.w1_baseline", "--port", str(port_b)]
        if self.workers > 1:
            argv_a += ["--workers", str(self.workers)]
            argv_b += ["--workers", str(self.workers)]
        argv_b += ["--dsn", asyncpg_dsn(_through(pb, self.ctx.database_url))]
        data_dir = self.workdir / f"data-{self.workers}"
        env_a = _server_env(self.ctx, _through(pa, self.ctx.database_url), self.queue, data_dir, port_a)
        env_b = {k: v for k, v in os.environ.items() if not k.startswith("VOUCHSAFE_")}
        suffix = f"w{self.workers}"
        self.a = ServerProcess(f"vouchsafe-{suffix}", argv_a, env_a, port_a, self.workdir).start()
        self.b = ServerProcess(f"baseline-{suffix}", argv_b, env_b, port_b, self.workdir).start()

    async def ready(self) -> float:
        """The seconds from launch until both servers answered."""
        assert self.a is not None and self.b is not None
        await asyncio.gather(self.a.ready(), self.b.ready())
        return time.monotonic() - self.started

    async def stop(self) -> None:
        for server in (self.a, self.b):
            if server is not None:
                await asyncio.to_thread(server.stop)
        for proxy in self.proxies:
            await proxy.stop()


def _check(comparison: Comparison, name: str, held: bool, text: str = "") -> bool:
    """A correctness check: the suite's harness records them (`check`); an older one gets an extra figure."""
    record = getattr(comparison, "check", None)
    if callable(record):
        return bool(record(name, held, text))
    comparison.extra[f"check {name}"] = (text or ("held" if held else "FAILED"), held)
    return held


async def _interleave(a: w1_load.Round, b: w1_load.Round, rounds: int, show: Comparison, deadline: float) -> None:
    kwargs = {"deadline": deadline} if "deadline" in inspect.signature(interleave).parameters else {}
    show.rounds = await interleave(a, b, rounds, show=show, **kwargs)


async def dashboard_comparison(
    servers: Servers, token: str, size: dict[str, int], ctx: BenchContext, concurrency: int, label: str = ""
) -> Comparison:
    assert servers.a is not None and servers.b is not None
    c = Comparison(
        workload=f"W1 dashboard {size['orders']} orders x {size['vouchers']} vouchers{label}",
        a_label="vouchsafe serve",
        b_label="minimal Strawberry + one asyncpg statement",
        unit="ms CPU/request",
        higher_is_better=False,
        target=f"server CPU/request A/B <= {CPU_TARGET}; A <= {STATEMENT_TARGET} SQL statements/request",
        max_ratio=CPU_TARGET,
    )
    variables = {"orders": size["orders"], "vouchers": size["vouchers"]}
    # Both cold: W1 measures the work of answering; the polled comparison below measures the cache.
    a = w1_load.Side(servers.a, servers.proxies[0], token, variables, concurrency, cold=True)
    b = w1_load.Side(servers.b, servers.proxies[1], token, variables, concurrency, cold=True)
    try:
        data_a, data_b = await a.answer(), await b.answer()
        _check(c, "A and B answer the same data", w1_load.same(data_a, data_b), w1_load.shape(data_a))
        for side in (a, b):  # warm-up, not counted: caches, prepared statements, pool connections
            await side.round(max(10, size["requests"] // 2))
        await _interleave(
            lambda: a.round(size["requests"]), lambda: b.round(size["requests"]), size["rounds"], c, ctx.deadline
        )
    finally:
        await a.close()
        await b.close()
    statements = w1_load.median(a.statements)
    rates = f"A {w1_load.median(a.rates):.1f}  B {w1_load.median(b.rates):.1f}"
    c.extra["requests/s"] = (f"{rates} ({concurrency} at a time)", None)
    for name, side in (("A", a), ("B", b)):
        per_request = f"{w1_load.median(side.statements):.2f}"
        resets = f"{w1_load.median(side.resets):.2f}"
        c.extra[f"SQL statements/request ({name})"] = (f"{per_request}, and {resets} pool resets", None)
    _check(c, f"A runs <= {STATEMENT_TARGET} statements a request", statements <= STATEMENT_TARGET, f"{statements:.2f}")
    # A round answered from the response cache runs fewer statements: every round must have done the work.
    _check(
        c,
        "every round of A computed its answers (none from the response cache)",
        all(abs(n - statements) < 0.5 for n in a.statements),
        ", ".join(f"{n:.2f}" for n in a.statements),
    )
    return c


async def polled_comparison(servers: Servers, token: str, size: dict[str, int], ctx: BenchContext) -> Comparison:
    assert servers.a is not None
    c = Comparison(
        workload="W1 polled (same dashboard, nothing changed)",
        a_label="asked again, nothing changed (response cache)",
        b_label="the same dashboard computed (cache missed)",
        unit="ms CPU/request",
        higher_is_better=False,
        target=f"polled/cold <= {POLLED_TARGET} (>= 10x faster)",
        max_ratio=POLLED_TARGET,
    )
    side = w1_load.Side(servers.a, servers.proxies[0], token, {"orders": size["orders"], "vouchers": size["vouchers"]})
    try:
        polled = w1_load.Polled(side)
        n = size["polled"]
        rounds = size["polled_rounds"]
        await _interleave(lambda: polled.repeated(n), lambda: polled.cold(n), rounds, c, ctx.deadline)
        _check(c, "cold answers show the change", polled.cold_fresh, f"{polled.cold_checked} cold answers checked")
    finally:
        await side.close()
    return c


async def run(ctx: BenchContext, *, profile: bool = False) -> list[Comparison]:
    size = _sizes(ctx.quick)
    queue = f"bench-w1-{secrets.token_hex(4)}"
    comparisons: list[Comparison] = []
    with tempfile.TemporaryDirectory(prefix="bench-w1-") as tmp:
        workdir = Path(tmp)
        servers = Servers(ctx, queue, workdir)
        try:
            await servers.launch()
            email, up = await asyncio.gather(_seed(ctx, size), servers.ready())
            assert servers.a is not None
            token = await w1_load.sign_in(servers.a.url, email)
            print(f"  W1: servers answered in {up:.1f} s; partner of {size['orders']} orders seeded", flush=True)
            comparisons.append(await dashboard_comparison(servers, token, size, ctx, concurrency=2))
            comparisons.append(await polled_comparison(servers, token, size, ctx))
            if profile:
                await w1_load.profile(servers, token, size, workdir)
        finally:
            await servers.stop()
        if not _serve_supports_workers():
            print("  W1: `vouchsafe serve --workers` is not on this branch: the two-process figures are skipped")
        elif ctx.quick:
            print("  W1: --quick: the `serve --workers 2` figures are skipped (full runs only)")
        else:
            two = Servers(ctx, queue, workdir, workers=2)
            try:
                await two.launch()
                await two.ready()
                label = ", 2 processes"
                comparisons.append(await dashboard_comparison(two, token, size, ctx, concurrency=4, label=label))
            finally:
                await two.stop()
        await _clean_up(ctx, queue)
    return comparisons


async def _seed(ctx: BenchContext, size: dict[str, int]) -> str:
    """Our partner, seeded while the servers start; its e-mail."""
    await database.open_db(ctx.database_url, pool_size=4, apps=ORM_APPS)
    try:
        email = await w1_load.seed_partner(size["orders"], size["per_order"], ctx.code_key)
        await w1_load.quiet_outbox(connections.get("default"))
    finally:
        await database.close_db()
    return email


async def _clean_up(ctx: BenchContext, queue: str) -> None:
    """Our outbox rows (e-mails of the deposits) marked done, our Redis keys deleted."""
    await database.open_db(ctx.database_url, pool_size=2, apps=ORM_APPS)
    try:
        await w1_load.quiet_outbox(connections.get("default"))
    finally:
        await database.close_db()
    client = aioredis.from_url(ctx.redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"*{queue}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.w1_dashboard", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, 2 rounds (the CI smoke step)")
    p.add_argument("--profile", action="store_true", help="py-spy the A server over one more round")
    p.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds (default 900)")
    return p.parse_args(argv)


async def standalone(args: argparse.Namespace) -> bool:
    started = time.monotonic()
    server = server_url()
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS
    if urlsplit(redis_url).hostname not in {"127.0.0.1", "localhost", "::1"}:
        raise SystemExit("bench: loopback Redis only")
    name = f"bench_w1_{secrets.token_hex(4)}"
    url = with_database(server, name)
    await admin_execute(server, f'CREATE DATABASE "{name}"')
    print(f"database {name}; {'quick' if args.quick else 'full'} run", flush=True)
    try:
        async with asyncio.timeout(args.timeout):
            await database.migrate(url, apps=ORM_APPS)
            ctx = BenchContext(
                server_url=server,
                database_url=url,
                redis_url=redis_url,
                code_key=secrets.token_bytes(32),
                secret_key=secrets.token_bytes(32),
                quick=args.quick,
                deadline=started + args.timeout,
            )
            set_up = time.monotonic() - started
            comparisons = await run(ctx, profile=args.profile)
            workload = time.monotonic() - started - set_up
    finally:
        await admin_execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    ok = report(comparisons)
    print(f"\nW1 {workload:.1f} s (server start-up included); database set-up {set_up:.1f} s")
    return ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        ok = asyncio.run(standalone(args))
    except TimeoutError:
        print(f"bench: gave up after {args.timeout:.0f} s", file=sys.stderr)
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
