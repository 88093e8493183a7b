"""W6's load: redemptions at a steady pace, in a process of its own, while the sweep runs.

The process plays the API: it redeems codes through services.redemption.redeem (the
order lock, the compare-and-set, the certificate request) at `rate` a second spread over
`workers` tasks, each request timed. It runs while told to (`start` .. `stop`) and
stops by itself after `lifetime` seconds whatever the parent does.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from redis.asyncio import Redis

from infra import database
from infra.ratelimit import RateLimiter
from models import ORM_APPS, Role
from services import redemption
from services.actors import Actor
from services.codes import CodeCipher
from services.errors import DomainError
from services.events import KeptEvents

CLIENT = "127.0.0.1"


@dataclass
class Latencies:
    seconds: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def percentile(self, p: float) -> float:
        if not self.seconds:
            return float("nan")
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def extend(self, other: Latencies) -> None:
        self.seconds.extend(other.seconds)
        self.errors.update(other.errors)

    def text(self) -> str:
        ms = {p: self.percentile(p) * 1000 for p in (50, 99)}
        top = max(self.seconds, default=float("nan")) * 1000
        return (
            f"n={len(self.seconds)} p50 {ms[50]:.1f} ms p99 {ms[99]:.1f} ms max {top:.1f} ms errors {dict(self.errors)}"
        )


@dataclass(frozen=True)
class LoadSpec:
    database_url: str
    redis_url: str
    namespace: str  # Redis key namespace of the rate limiter: this run's own
    code_key: bytes
    user_id: int
    account_id: int
    codes: list[str]
    rate: float  # redemptions a second, in all
    workers: int
    lifetime: float


async def _pace(
    spec: LoadSpec, codes: Iterator[str], stop: asyncio.Event, out: Latencies, limiter: RateLimiter
) -> None:
    actor = Actor(user_id=spec.user_id, account_id=spec.account_id, role=Role.MEMBER)
    cipher = CodeCipher(spec.code_key)
    interval = spec.workers / spec.rate

    async def worker(offset: float) -> None:
        due = time.monotonic() + offset
        while not stop.is_set():
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            due += interval
            code = next(codes, None)
            if code is None or stop.is_set():
                return
            request = redemption.RequestInput(code, "www.example.com", [], [], None)
            started = time.perf_counter()
            try:
                await redemption.redeem(
                    actor=actor, request=request, cipher=cipher, client=CLIENT, limiter=limiter, bus=KeptEvents()
                )
            except DomainError as exc:
                out.errors[exc.code.value] += 1
            out.seconds.append(time.perf_counter() - started)

    await asyncio.gather(*(worker(i * interval / spec.workers) for i in range(spec.workers)))


async def _next_command(conn: Connection) -> object:
    while True:  # a pipe has nothing to await: look at it every 10 ms
        if conn.poll():
            return conn.recv()
        await asyncio.sleep(0.01)


async def _serve(conn: Connection, spec: LoadSpec) -> None:
    await database.open_db(spec.database_url, pool_size=spec.workers + 2, apps=ORM_APPS)
    redis = Redis.from_url(spec.redis_url)
    limiter = RateLimiter(redis, namespace=spec.namespace)
    codes = iter(spec.codes)
    try:
        conn.send(("ready",))
        while True:
            command = await _next_command(conn)
            if command == "exit":
                return
            stop, out = asyncio.Event(), Latencies()
            pacing = asyncio.create_task(_pace(spec, codes, stop, out, limiter))
            while True:  # a pipe has nothing to await: look at it every 10 ms
                if conn.poll() or pacing.done():
                    break
                await asyncio.sleep(0.01)
            stop.set()
            await pacing
            if conn.poll():
                conn.recv()  # the "stop"
            conn.send(("result", out.seconds, dict(out.errors)))
    finally:
        await redis.aclose()
        await database.close_db()


def _main(conn: Connection, spec: LoadSpec) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(spec.lifetime):
            await _serve(conn, spec)

    with contextlib.suppress(TimeoutError):
        asyncio.run(bounded())


class RedeemLoad:
    """The parent's handle: `async with RedeemLoad(spec) as load: await load.start(); ...; await load.stop()`."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process: Any = context.Process(target=_main, args=(child, spec), daemon=True)

    async def _receive(self, wait_seconds: float) -> Any:
        if not await asyncio.to_thread(self._conn.poll, wait_seconds):
            raise TimeoutError("the redeem load process did not answer")
        return self._conn.recv()

    async def __aenter__(self) -> RedeemLoad:
        self._process.start()
        await self._receive(60)
        return self

    async def start(self) -> None:
        self._conn.send("run")

    async def stop(self) -> Latencies:
        self._conn.send("stop")
        _, seconds, errors = await self._receive(30)
        return Latencies(seconds, Counter(errors))

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self._conn.send("exit")
        await asyncio.to_thread(self._process.join, 10)
        if self._process.is_alive():
            self._process.kill()
            await asyncio.to_thread(self._process.join, 5)
