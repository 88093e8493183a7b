"""Rate limits as the domain sees them: a used-up allowance is a RATE_LIMITED error."""

from __future__ import annotations

from collections.abc import Sequence

from infra.ratelimit import Limit, RateLimited, RateLimiter
from services.errors import DomainError, ErrorCode


async def count_attempt(limiter: RateLimiter, subjects: Sequence[tuple[Limit, str]]) -> None:
    """Count one attempt against every subject; refuse it when any allowance is used up."""
    try:
        await limiter.attempt_all(subjects)
    except RateLimited as exc:
        seconds = exc.retry_after_seconds
        raise DomainError(
            ErrorCode.RATE_LIMITED,
            f"Too many failed attempts. Try again in {seconds} second{'s' if seconds != 1 else ''}.",
            retry_after_seconds=seconds,
        ) from exc
