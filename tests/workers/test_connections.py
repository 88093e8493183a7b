"""The Redis client's pool: a connection's check does not hold up other commands (infra.redis)."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import ConnectionPool

from infra.redis import CheckOutsideLockPool, open_redis
from settings import Settings


async def test_a_slow_check_does_not_hold_up_another_checkout() -> None:
    # given: the embedded client's pool, whose first check of a connection hangs until released
    redis = await open_redis(None)
    pool = redis.connection_pool
    assert isinstance(pool, CheckOutsideLockPool)
    release = asyncio.Event()
    original = pool.ensure_connection
    checks = 0

    async def first_check_hangs(connection: Any) -> None:
        nonlocal checks
        checks += 1
        if checks == 1:
            await release.wait()
        await original(connection)

    pool.ensure_connection = first_check_hangs  # type: ignore[method-assign]
    try:
        # when: one checkout is stuck in its check, and a second one is asked for
        stuck = asyncio.create_task(pool.get_connection())
        await asyncio.sleep(0.05)
        # then: the second gets its own connection meanwhile (redis-py's pool would wait on its lock)
        other = await asyncio.wait_for(pool.get_connection(), timeout=2)
        assert not stuck.done()
        release.set()
        first = await asyncio.wait_for(stuck, timeout=2)
        assert first is not other
        await pool.release(first)
        await pool.release(other)
        assert await redis.ping()
    finally:
        release.set()
        await redis.aclose()


async def test_the_stock_pool_would_fail_that_test() -> None:
    """Why the subclass exists: redis-py 5.3's pool checks under its lock (drop this when it no longer does)."""
    pool = ConnectionPool()
    release = asyncio.Event()

    async def hangs(connection: Any) -> None:
        await release.wait()

    pool.ensure_connection = hangs  # type: ignore[method-assign]
    stuck = asyncio.create_task(pool.get_connection())
    await asyncio.sleep(0.05)
    second = asyncio.create_task(pool.get_connection())
    await asyncio.sleep(0.05)
    assert not second.done()  # queued behind the first one's check
    release.set()
    for connection in await asyncio.gather(stuck, second):
        await pool.release(connection)
    await pool.disconnect()


async def test_a_standalone_worker_connects_on_the_same_pool(settings: Settings) -> None:
    # `vouchsafe worker` opens its own connection: on this pool too, for its queue, with arq's job options
    from workers.worker import standalone_worker

    worker = standalone_worker(settings)
    redis = await worker.open_pool()
    try:
        assert isinstance(redis.connection_pool, CheckOutsideLockPool)
        assert redis.default_queue_name == settings.queue_name == worker.queue_name
        assert redis.expires_extra_ms == worker.expires_extra_ms
        assert await redis.ping()
    finally:
        await redis.aclose()
