"""The rate limiter: failures are capped, even concurrent ones; refused and successful attempts are taken back."""

from __future__ import annotations

import asyncio

import fakeredis

from infra.ratelimit import Limit, RateLimited, RateLimiter

LIMIT = Limit("test", 3, 60)


def limiter() -> RateLimiter:
    return RateLimiter(fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()), namespace="t")


async def attempt(limiter: RateLimiter, *, succeeds: bool) -> str:
    try:
        await limiter.attempt(LIMIT, "office")
    except RateLimited as refused:
        return "refused" if refused.retry_after_seconds > 0 else "refused without a wait"
    await asyncio.sleep(0.01)  # the work, while others run
    if succeeds:
        await limiter.forgive(LIMIT, "office")
    return "ran"


async def test_failures_are_capped_even_when_concurrent() -> None:
    rl = limiter()
    outcomes = await asyncio.gather(*(attempt(rl, succeeds=False) for _ in range(10)))
    assert outcomes.count("ran") == 3
    assert await attempt(rl, succeeds=False) == "refused"


async def test_a_burst_of_successes_does_not_lock_the_subject_out() -> None:
    rl = limiter()
    outcomes = await asyncio.gather(*(attempt(rl, succeeds=True) for _ in range(10)))
    assert outcomes.count("ran") >= 3  # more than the limit at once are turned away meanwhile
    # but nothing is left counted: the next attempt runs
    assert await attempt(rl, succeeds=True) == "ran"


async def test_refusals_do_not_add_to_the_count() -> None:
    rl = limiter()
    for _ in range(LIMIT.max_hits):
        assert await attempt(rl, succeeds=False) == "ran"
    for _ in range(5):
        assert await attempt(rl, succeeds=False) == "refused"
    redis = rl._redis  # noqa: SLF001  # the limiter's own counters
    values = [int(await redis.get(k)) async for k in redis.scan_iter(match="t:rl:test:*")]
    assert values == [LIMIT.max_hits]
