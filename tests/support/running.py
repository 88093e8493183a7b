"""Running an app's jobs to the end (burst mode), waiting for a condition, a worker beside the app, a free port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import time_machine

from settings import Settings


async def run_jobs(app: Any, *, within: float = 120.0) -> None:
    """Burst mode: a worker runs the outbox's rows, and the rows those jobs write, until none is left to run.

    For an app that runs no worker of its own (`create_app(settings, worker=False)`, the
    `burst_api` fixture), so that every job runs here and the call returns when all are done.
    """
    from infra.redis import ArqQueue
    from models import OutboxMessage, OutboxStatus
    from services import outbox
    from workers.worker import embedded_worker

    resources = app.state.resources
    queue = ArqQueue(resources.redis)
    waiting = OutboxMessage.filter(status__in=[OutboxStatus.PENDING, OutboxStatus.ENQUEUED])
    async with asyncio.timeout(within):
        while await waiting.exists():
            await outbox.relay_pending(queue)
            # arq's burst mode: it returns once the queue is empty and its jobs have ended.
            worker = embedded_worker(resources.settings, resources.redis, burst=True)
            main = asyncio.create_task(worker.main())
            await asyncio.wait({main})
            await worker.finish(main)


async def until_announced(
    app: Any, check: Callable[[], Awaitable[bool]], *, orders: Iterable[int], tenant: int, within: float = 60.0
) -> None:
    """Until `check` holds, tried again after each change event of these orders the app hears (no timer).

    For work the app's own worker does meanwhile (a PDF it renders): its events announce each step.
    """
    from services.events import Topic

    hub = app.state.resources.hub
    with contextlib.ExitStack() as stack:
        heard = [stack.enter_context(hub.subscribe(Topic.ORDER.value, order, tenant=tenant)) for order in orders]
        async with asyncio.timeout(within):
            await hub.connected.wait()  # subscribed on Redis: no event from here on is missed
            while not await check():
                waits = [asyncio.ensure_future(subscriber.changed()) for subscriber in heard]
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for wait in waits:
                        wait.cancel()


async def wait_for(predicate: Any, *, within: float = 10.0, interval: float = 0.05) -> Any:
    """Poll an async predicate until it returns something truthy (for what another process or thread does)."""
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
