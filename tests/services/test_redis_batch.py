"""Writes after a commit: queued in a batch and sent in one round trip, at once outside one; best effort."""

from __future__ import annotations

import logging
from typing import Any

import fakeredis
import pytest

from infra import redis_batch
from infra.ratelimit import Limit, RateLimited, RateLimiter


class CountingRedis(fakeredis.FakeAsyncRedis):
    """An in-process Redis that counts the pipelines it sends (each one round trip)."""

    sent = 0

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction=transaction, shard_hint=shard_hint)
        execute = pipe.execute

        async def counted(raise_on_error: bool = True) -> Any:
            self.sent += 1
            return await execute(raise_on_error)

        pipe.execute = counted  # type: ignore[method-assign]  # counting the round trips
        return pipe


LIMIT = Limit("test", 3, 60)


def redis() -> CountingRedis:
    return CountingRedis(server=fakeredis.FakeServer())


def incr(key: str) -> redis_batch.Queue:
    return lambda pipe: pipe.incr(key)


async def test_outside_a_batch_each_write_is_sent_at_once() -> None:
    r = redis()
    await redis_batch.write(r, "a", incr("a"))
    await redis_batch.write(r, "b", incr("b"))
    assert (r.sent, await r.get("a"), await r.get("b")) == (2, b"1", b"1")


async def test_in_a_batch_writes_wait_for_its_end_and_go_in_one_round_trip() -> None:
    r = redis()
    async with redis_batch.batch(r):
        await redis_batch.write(r, "a", incr("a"))
        await redis_batch.write(r, "b", incr("b"))
        assert (r.sent, await r.get("a")) == (0, None)
    assert (r.sent, await r.get("a"), await r.get("b")) == (1, b"1", b"1")


async def test_a_batch_on_one_redis_leaves_another_redis_alone() -> None:
    batched, other = redis(), redis()
    async with redis_batch.batch(batched):
        await redis_batch.write(other, "a", incr("a"))
        assert await other.get("a") == b"1"


async def test_what_was_queued_is_sent_when_the_body_raises() -> None:
    r = redis()

    async def queue_then_raise() -> None:
        async with redis_batch.batch(r):
            await redis_batch.write(r, "a", incr("a"))
            raise RuntimeError("after the commit")

    with pytest.raises(RuntimeError, match="after the commit"):
        await queue_then_raise()
    assert await r.get("a") == b"1"


async def test_a_failed_send_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    server = fakeredis.FakeServer()
    r = CountingRedis(server=server)
    async with redis_batch.batch(r):
        await redis_batch.write(r, "change events", incr("a"))
        server.connected = False  # Redis is gone by the end of the request
    assert "change events" in caplog.text
    assert caplog.records[-1].levelno == logging.WARNING


async def test_flush_sends_what_is_queued_so_far() -> None:
    r = redis()
    async with redis_batch.batch(r):
        await redis_batch.write(r, "a", incr("a"))
        await redis_batch.flush(r)
        assert (r.sent, await r.get("a")) == (1, b"1")
        await redis_batch.flush(r)  # nothing queued: nothing sent
        assert r.sent == 1
    assert r.sent == 1


async def test_hits_forgiven_in_a_batch_do_not_count_against_the_next_attempt() -> None:
    # One request may redeem more codes than the limit allows attempts in flight: each hit
    # is forgiven before the next attempt counts, as it was before forgiving was batched.
    r = redis()
    limiter = RateLimiter(r, namespace="t")
    async with redis_batch.batch(r):
        for _ in range(10):
            await limiter.attempt(LIMIT, "office")
            await limiter.forgive(LIMIT, "office")
    [key] = [k async for k in r.scan_iter(match="t:rl:test:*")]
    assert int(await r.get(key)) == 0
    assert 0 < await r.ttl(key) <= 60


async def test_failures_in_a_batch_still_count() -> None:
    r = redis()
    limiter = RateLimiter(r, namespace="t")
    async with redis_batch.batch(r):
        for _ in range(LIMIT.max_hits):
            await limiter.attempt(LIMIT, "office")
        with pytest.raises(RateLimited):
            await limiter.attempt(LIMIT, "office")
