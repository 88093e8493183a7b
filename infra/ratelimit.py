"""Fixed-window counters in Redis, shared by every API instance."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from infra import redis_batch


class RateLimited(Exception):
    """The window's allowance is used up; the attempt did not run."""

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(f"rate limited; retry after {retry_after_seconds} s")
        self.retry_after_seconds = retry_after_seconds


@dataclass(frozen=True)
class Limit:
    name: str
    max_hits: int
    window_seconds: int


def _key(namespace: str, limit: Limit, subject: str) -> str:
    # Subjects (e-mails, addresses) are hashed so the keys hold no personal data; the
    # namespace keeps deployments (and databases, whose ids restart) sharing a Redis apart.
    return f"{namespace}:rl:{limit.name}:{hashlib.sha256(subject.encode()).hexdigest()[:32]}"


# Every subject of an attempt is counted in one command, atomically: INCR, and EXPIRE NX
# so that the window starts with its first attempt and is never extended (a fixed
# window). A refused attempt ran nothing, so it is taken back at once: otherwise a burst
# of concurrent attempts that would all succeed (an office behind one address) locks its
# subjects out for the window. Attempts in flight and failures still count, so guessing
# stays capped. Returns 0 when the attempt may run; when it is refused, the seconds until
# the latest of the full windows ends (at least 1).
_ATTEMPT = """
local wait = 0
for i, key in ipairs(KEYS) do
    local count = redis.call('INCR', key)
    redis.call('EXPIRE', key, ARGV[2 * i - 1], 'NX')
    if count > tonumber(ARGV[2 * i]) then
        wait = math.max(wait, redis.call('TTL', key), 1)
    end
end
if wait > 0 then
    for _, key in ipairs(KEYS) do redis.call('DECR', key) end
end
return wait
"""


class RateLimiter:
    """Counts attempts before they run, so concurrent tries cannot slip past the limit.

    All the subjects of one attempt (e.g. the client address and the account) are
    counted by one script in one round trip to Redis: a script rather than a pipeline
    of INCR and EXPIRE, whose packing and parsing cost more than the counting
    (bench/README.md, W3). Forgiving is a write after the
    attempt's commit (infra.redis_batch): in a batch, it shares the request's one
    round trip after its commits.
    """

    def __init__(self, redis: Redis, *, namespace: str = "vouchsafe") -> None:
        self._redis = redis
        self._namespace = namespace
        # redis-py sends EVALSHA and loads a script the server does not know yet (a restarted Redis).
        self._attempt = redis.register_script(_ATTEMPT)

    async def attempt(self, limit: Limit, subject: str) -> None:
        """Count one attempt; refuse it when the window's allowance is used up."""
        await self.attempt_all([(limit, subject)])

    async def forgive(self, limit: Limit, subject: str) -> None:
        """A successful attempt does not count against the subject."""
        await self.forgive_all([(limit, subject)])

    def _keys(self, subjects: Sequence[tuple[Limit, str]]) -> list[str]:
        return [_key(self._namespace, limit, subject) for limit, subject in subjects]

    async def attempt_all(self, subjects: Sequence[tuple[Limit, str]]) -> None:
        """Count one attempt against every subject; refuse it when any window's allowance is used up."""
        args = [value for limit, _ in subjects for value in (limit.window_seconds, limit.max_hits)]
        # The same request's earlier hits, still queued, are forgiven before this one counts.
        await redis_batch.flush(self._redis)
        wait = int(await self._attempt(keys=self._keys(subjects), args=args))
        if wait:
            raise RateLimited(wait)

    async def forgive_all(self, subjects: Sequence[tuple[Limit, str]]) -> None:
        """The attempt succeeded: it does not count against any of its subjects."""
        keys = self._keys(subjects)
        windows = [limit.window_seconds for limit, _ in subjects]

        def queue(pipe: Pipeline) -> None:
            for key, window in zip(keys, windows, strict=True):
                pipe.decr(key)
                # A window that ended while the attempt ran: DECR made a new key, and it expires too.
                pipe.expire(key, window, nx=True)

        await redis_batch.write(self._redis, "rate-limit forgive", queue)
