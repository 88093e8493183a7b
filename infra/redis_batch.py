"""Best-effort Redis writes that follow a commit, sent together: one round trip a request.

After its commit a redemption makes three small writes to Redis: it forgives the
lookup's rate-limit hit, publishes its change event (bumping the owner's cached-answer
version) and, as every mutation, bumps the caller's own version. Each was a round
trip of its own, each a visible share of a redemption's server CPU (bench/README.md,
W3). Each is best effort already: the change has committed, and a lost write is
logged, never an error for the client.

Inside `batch(redis)`, which the API opens around a mutation, those writes are queued
and sent in one pipeline when it closes: after the operation's last commit and before
its answer leaves. Outside a batch (workers, one-off commands) each is sent at once.
Whoever must see queued writes applied first (the rate limiter, before it counts a new
attempt of the same request) calls `flush`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

log = logging.getLogger(__name__)

Queue = Callable[[Any], None]  # puts commands on a redis-py pipeline


@dataclass
class _Batch:
    redis: Redis
    writes: list[tuple[str, Queue]] = field(default_factory=list)  # (what, how), for the log


# The batch object itself is shared by the tasks that copy the context (resolvers that
# graphql-core gathers), so what any of them queues is sent.
_open: ContextVar[_Batch | None] = ContextVar("redis_batch", default=None)


async def write(redis: Redis, what: str, queue: Queue) -> None:
    """The commands `queue` puts on a pipeline: queued in the open batch on this Redis, else sent now.

    Sent now, a failure raises (the caller decides); queued, it is logged at the flush.
    """
    batch = _open.get()
    if batch is not None and batch.redis is redis:
        batch.writes.append((what, queue))
        return
    await _send(redis, [(what, queue)])


async def flush(redis: Redis) -> None:
    """Send what the open batch on this Redis holds so far (nothing when none is open)."""
    batch = _open.get()
    if batch is None or batch.redis is not redis or not batch.writes:
        return
    writes, batch.writes = batch.writes, []
    await _send_logged(redis, writes)


@contextlib.asynccontextmanager
async def batch(redis: Redis) -> AsyncIterator[None]:
    """Queue this context's writes on `redis` and send them in one round trip at the end.

    They are sent whether the body returns or raises: whatever it committed before
    raising is announced as it would have been without the batch.
    """
    opened = _Batch(redis)
    token = _open.set(opened)
    try:
        yield
    finally:
        _open.reset(token)
        if opened.writes:
            await _send_logged(redis, opened.writes)


async def _send(redis: Redis, writes: list[tuple[str, Queue]]) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for _, queue in writes:
            queue(pipe)
        await pipe.execute()


async def _send_logged(redis: Redis, writes: list[tuple[str, Queue]]) -> None:
    try:
        await _send(redis, writes)
    except Exception as exc:  # best effort, as each write is on its own
        what = [w for w, _ in writes]
        log.warning("Redis writes after a commit not sent (%s: %s): %s", type(exc).__name__, exc, what)
