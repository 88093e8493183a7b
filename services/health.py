"""What operators poll, for API and worker processes alike: readiness checks and scrape-time measurements."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tortoise import connections

from infra import database, metrics
from services import idempotency, outbox

log = logging.getLogger(__name__)

# Every check and measurement waits at most this long: a scrape or probe must answer, slow or not.
CHECK_TIMEOUT_SECONDS = 2.0


async def _timed(work: Any) -> Any:
    async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
        return await work


async def readiness(redis: Any, *, live_connected: bool | None = None) -> dict[str, str]:
    """ "ok" or the reason, per dependency; the live subscription only for processes that hold one."""
    checks: dict[str, str] = {}
    pool = database.pool_stats()  # before the probe below, which would wait in the pool too
    try:
        await _timed(connections.get("default").execute_query("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    if pool is not None:
        checks["database_pool"] = "error: exhausted" if pool.exhausted else "ok"
    try:
        await _timed(redis.ping())
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    if live_connected is not None:
        checks["live"] = "ok" if live_connected else "error: subscription lost"
    return checks


POOL_IN_USE = metrics.gauge("vouchsafe_db_pool_connections_in_use", "Database connections lent out now.")
POOL_WAITING = metrics.gauge("vouchsafe_db_pool_waiting", "Requests waiting for a database connection now.")
POOL_MAX = metrics.gauge("vouchsafe_db_pool_max_connections", "The database pools' sizes.")


def sample_pool() -> None:
    """This process's pool into its gauges (summed over the running processes)."""
    pool = database.pool_stats()
    if pool is not None:
        POOL_IN_USE.set(pool.in_use)
        POOL_WAITING.set(pool.waiting)
        POOL_MAX.set(pool.max_size)


async def sample_pool_forever(interval: float) -> None:
    while True:
        sample_pool()
        await asyncio.sleep(interval)


async def measure(redis: Any, queue_name: str) -> metrics.Snapshot:
    """The deployment's backlog as gauges: outbox rows by status, the oldest pending row's age, unresolved card
    payments, the queue's depth.

    A measurement that fails or times out is left out of this scrape (the gap is what alerts see).
    """
    snapshot = metrics.Snapshot()
    sample_pool()
    try:
        counts = await _timed(outbox.counts_by_status())
        for status, count in counts.items():
            snapshot.add(
                "vouchsafe_outbox_messages",
                "Outbox messages by status (FAILED needs an operator).",
                count,
                status=status,
            )
        age = await _timed(outbox.oldest_pending_age_seconds())
        snapshot.add(
            "vouchsafe_outbox_oldest_pending_age_seconds", "Age of the oldest outbox message not yet done.", age
        )
    except Exception as exc:
        log.warning("metrics: outbox not measured: %s: %s", type(exc).__name__, exc)
    try:
        limbo = await _timed(idempotency.count_unresolved())
        snapshot.add(
            "vouchsafe_card_payments_unresolved",
            "Card payments left between charge and commit, no retry since (vouchsafe payments unresolved).",
            limbo,
        )
    except Exception as exc:
        log.warning("metrics: unresolved card payments not measured: %s: %s", type(exc).__name__, exc)
    try:
        depth = await _timed(redis.zcard(queue_name))
        snapshot.add("vouchsafe_queue_jobs", "Jobs in the queue (due or deferred), not yet taken.", int(depth))
    except Exception as exc:
        log.warning("metrics: queue not measured: %s: %s", type(exc).__name__, exc)
    return snapshot
