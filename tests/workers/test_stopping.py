"""Background loops stop when cancelled, even when their wake-up event fires in the same moment (infra.waits).

Python 3.11's `asyncio.wait_for` loses a cancellation that arrives with the awaited result:
the outbox relay, woken by a commit just as `vouchsafe serve` stopped, went round again and
held the shutdown for its whole bound (5 s, then it was left running).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable

import pytest

from infra.redis import ArqQueue, open_redis
from infra.waits import woken
from services import outbox
from settings import Settings
from workers.relay import relay_forever

Wait = Callable[[asyncio.Event], Awaitable[object]]


async def _with_wait_for(event: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=30)


async def _with_woken(event: asyncio.Event) -> None:
    await woken(event, 30)


async def stops_when_woken_and_cancelled_at_once(wait: Wait) -> bool:
    """A loop waiting on `wait`: its event set and its task cancelled in the same step. Did it stop?"""
    event = asyncio.Event()

    async def loop() -> None:
        while True:
            await wait(event)
            event.clear()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.01)
    event.set()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1)
    if not done:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return bool(done)


async def test_woken_says_whether_the_event_came_or_the_time_ran_out() -> None:
    event = asyncio.Event()
    assert await woken(event, 0.01) is False
    event.set()
    assert await woken(event, 0.01) is True


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12's wait_for keeps the cancellation")
async def test_the_cause_wait_for_loses_a_cancellation_that_comes_with_the_wake_up() -> None:
    assert not await stops_when_woken_and_cancelled_at_once(_with_wait_for)


async def test_a_loop_waiting_with_woken_stops() -> None:
    assert await stops_when_woken_and_cancelled_at_once(_with_woken)


async def test_a_cancellation_swallowed_during_the_turn_is_honoured_at_the_wait() -> None:
    event = asyncio.Event()
    started = asyncio.Event()

    async def loop() -> None:
        while True:
            started.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.2)  # a library that loses the cancellation, as 3.11's wait_for can
            await woken(event, 30)

    task = asyncio.create_task(loop())
    await started.wait()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert done
    assert task.cancelled()


async def test_the_outbox_relay_stops_when_a_commit_wakes_it_as_the_server_stops(db: None, settings: Settings) -> None:
    redis = await open_redis(settings.redis_url, queue_name=settings.queue_name)
    try:
        relay = asyncio.create_task(relay_forever(ArqQueue(redis), interval=30))
        await asyncio.sleep(0.3)  # its first sweep done: waiting for a commit
        outbox.notify()  # a transaction with outbox rows committed ...
        relay.cancel()  # ... as the server stops
        done, _ = await asyncio.wait({relay}, timeout=2)
        assert done, "the relay went round again instead of stopping"
        assert relay.cancelled()
    finally:
        await redis.aclose()
