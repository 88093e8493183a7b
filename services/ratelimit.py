"""Fixed-window counters in Redis, shared by every API instance."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from services.errors import DomainError, ErrorCode


class Counter(Protocol):
    """The slice of a Redis client the limiter uses: commands sent together in one pipeline."""

    def pipeline(self, transaction: bool = True) -> Any: ...


@dataclass(frozen=True)
class Limit:
    name: str
    max_hits: int
    window_seconds: int


SIGN_IN_PER_EMAIL = Limit("signin:email", 10, 15 * 60)
SIGN_IN_PER_CLIENT = Limit("signin:client", 30, 15 * 60)


def _key(namespace: str, limit: Limit, subject: str) -> str:
    # Subjects (e-mails, addresses) are hashed so the keys hold no personal data; the
    # namespace keeps deployments (and databases, whose ids restart) sharing a Redis apart.
    return f"{namespace}:rl:{limit.name}:{hashlib.sha256(subject.encode()).hexdigest()[:32]}"


class RateLimiter:
    """Counts attempts before they run, so concurrent tries cannot slip past the limit.

    All the subjects of one attempt (e.g. the client address and the account) are
    counted in one round trip to Redis, and forgiven in one: a redemption used to
    wait for six.
    """

    def __init__(self, redis: Counter, *, namespace: str = "vouchsafe") -> None:
        self._redis = redis
        self._namespace = namespace

    async def attempt(self, limit: Limit, subject: str) -> None:
        """Count one attempt; refuse it when the window's allowance is used up."""
        await self.attempt_all([(limit, subject)])

    async def forgive(self, limit: Limit, subject: str) -> None:
        """A successful attempt does not count against the subject."""
        await self.forgive_all([(limit, subject)])

    async def attempt_all(self, subjects: Sequence[tuple[Limit, str]]) -> None:
        """Count one attempt against every subject; refuse it when any window's allowance is used up."""
        keys = [(limit, _key(self._namespace, limit, subject)) for limit, subject in subjects]
        async with self._redis.pipeline(transaction=False) as pipe:
            for limit, key in keys:
                pipe.incr(key)
                # NX: the window starts with its first attempt and is never extended (a fixed
                # window); the count is not known before the pipeline runs.
                pipe.expire(key, limit.window_seconds, nx=True)
            replies = await pipe.execute()
        counts = [int(count) for count in replies[::2]]
        if any(count > limit.max_hits for (limit, _), count in zip(keys, counts, strict=True)):
            # A refused attempt ran nothing, so it is taken back: otherwise a burst of concurrent
            # attempts that would all succeed (an office behind one address) locks its subjects out
            # for the window. Attempts in flight and failures still count, so guessing stays capped.
            await self.forgive_all(subjects)
            raise DomainError(ErrorCode.RATE_LIMITED, "Too many failed attempts. Try again later.")

    async def forgive_all(self, subjects: Sequence[tuple[Limit, str]]) -> None:
        """The attempt succeeded: it does not count against any of its subjects."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for limit, subject in subjects:
                key = _key(self._namespace, limit, subject)
                pipe.decr(key)
                # A window that ended while the attempt ran: DECR made a new key; it expires too.
                pipe.expire(key, limit.window_seconds, nx=True)
            await pipe.execute()
