"""Waiting for a condition, a worker beside the app, a free port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import time_machine

from settings import Settings


async def wait_for(predicate: Any, *, within: float = 10.0, interval: float = 0.05) -> Any:
    """Poll an async predicate until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await predicate()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[None]:
    """A worker for the test's duration: the app has one in-process when embedded, otherwise start one."""
    if settings.embedded_redis:
        yield
        return
    from infra.redis import open_redis
    from workers.worker import embedded_worker

    redis = await open_redis(settings.redis_url, queue_name=settings.queue_name)
    # The embedded worker class only skips a log call; on real Redis it is arq's worker.
    worker = embedded_worker(settings, redis)
    task = asyncio.create_task(worker.main())
    try:
        yield
    finally:
        await worker.finish(task)
        await redis.aclose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def shifted(delta: timedelta) -> Iterator[None]:
    """Run a block as if `delta` had passed (or, negative, not yet): the wall clock moves, monotonic time does not."""
    with time_machine.travel(datetime.now(UTC) + delta, tick=True):
        yield
