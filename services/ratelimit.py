"""Fixed-window counters in Redis, shared by every API instance."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

from services.errors import DomainError, ErrorCode


class Counter(Protocol):
    """The slice of a Redis client the limiter uses."""

    def incr(self, name: str, amount: int = 1) -> Awaitable[Any]: ...
    def decr(self, name: str, amount: int = 1) -> Awaitable[Any]: ...
    def expire(self, name: str, time: int) -> Awaitable[Any]: ...


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
    """Counts attempts before they run, so concurrent tries cannot slip past the limit."""

    def __init__(self, redis: Counter, *, namespace: str = "vouchsafe") -> None:
        self._redis = redis
        self._namespace = namespace

    async def attempt(self, limit: Limit, subject: str) -> None:
        """Count one attempt; refuse it when the window's allowance is used up."""
        key = _key(self._namespace, limit, subject)
        count = int(await self._redis.incr(key))
        if count == 1:
            await self._redis.expire(key, limit.window_seconds)
        if count > limit.max_hits:
            raise DomainError(ErrorCode.RATE_LIMITED, "Too many failed attempts. Try again later.")

    async def forgive(self, limit: Limit, subject: str) -> None:
        """A successful attempt does not count against the subject."""
        await self._redis.decr(_key(self._namespace, limit, subject))
