"""Rate limits as the domain sees them: a used-up allowance is a RATE_LIMITED error."""

from __future__ import annotations

from collections.abc import Sequence

from infra import metrics
from infra.faults import RETRY_AFTER_SECONDS, is_unavailable
from infra.ratelimit import Limit, RateLimited, RateLimiter
from services.errors import DomainError, ErrorCode, unavailable

REFUSALS = metrics.counter(
    "vouchsafe_rate_limit_refusals_total", "Attempts refused by a rate limit, by kind (sign_in, redemption).", ["kind"]
)
# A limit's name starts with what it guards (services.accounts, services.redemption).
KINDS = {"signin": "sign_in", "redeem": "redemption"}


def kind_of(limit: Limit) -> str:
    return KINDS.get(limit.name.partition(":")[0], "other")


async def count_attempt(limiter: RateLimiter, subjects: Sequence[tuple[Limit, str]]) -> None:
    """Count one attempt against every subject; refuse it when any allowance is used up.

    Fails closed: when Redis cannot count (down, frozen past its timeout), the attempt does
    not run, and the client is told to try again (SERVICE_UNAVAILABLE), not that it erred.
    """
    try:
        await limiter.attempt_all(subjects)
    except RateLimited as exc:
        REFUSALS.labels(kind_of(subjects[0][0]) if subjects else "other").inc()
        seconds = exc.retry_after_seconds
        raise DomainError(
            ErrorCode.RATE_LIMITED,
            f"Too many failed attempts. Try again in {seconds} second{'s' if seconds != 1 else ''}.",
            retry_after_seconds=seconds,
        ) from exc
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        raise unavailable(
            "Attempts cannot be counted right now, so none is allowed. Try again in a few seconds.",
            RETRY_AFTER_SECONDS,
        ) from exc
