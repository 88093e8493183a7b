"""The transactional outbox: nothing is lost between the database and the queue.

Rows are written on the caller's connection, inside the transaction of the change
that needs the work. After commit, `notify()` wakes the relay, which hands each
row to the job queue under the job id `outbox-<id>` (`outbox-<id>:cpu` for CPU-bound
tasks); a periodic sweep relays what a broker outage left behind. Deliveries are at
least once, so `run` claims a row with a short lease (compare-and-set), renews it by a
heartbeat while the handler runs, and finishes it only while it still holds it: a
finished row is never run again, and a dead worker's row is free after one lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import F, Q
from tortoise.functions import Count

from infra import clock, metrics, tracing
from models import OutboxMessage, OutboxStatus
from services.errors import DomainError, ErrorCode

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
# How long a claim holds a row without a heartbeat: a killed worker's row is free again
# after this long. The worker passes VOUCHSAFE_JOB_LEASE_SECONDS.
LEASE = timedelta(seconds=10)
# The heartbeat renews the lease this many times per lease: two renewals may fail in a row.
BEATS_PER_LEASE = 3
# An ENQUEUED row whose job the queue no longer holds (Redis restarted empty, a job that
# raised) is offered again at the next sweep, once it has been enqueued this long: a
# moment for a job handed over just now. The lease keeps it from running twice.
REOFFER_AFTER = timedelta(seconds=2)
RUN_OUTBOX = "run_outbox"

RUNS = metrics.counter(
    "vouchsafe_outbox_runs_total",
    "Outbox tasks run, by task and outcome (done, retry, failed, ...).",
    ["task", "outcome"],
)
RUN_SECONDS = metrics.histogram(
    "vouchsafe_outbox_run_duration_seconds", "Time an outbox task's handler took.", ["task"], metrics.JOB_BUCKETS
)

Handler = Callable[[dict[str, Any], int], Awaitable[None]]
# Called once when a task has failed for the last time, to make the failure visible
# where its owner looks (e.g. an order's PDF state): (payload, error text).
FailureHook = Callable[[dict[str, Any], str], Awaitable[None]]


class JobQueue(Protocol):
    async def enqueue(self, function: str, *args: Any, job_id: str) -> None: ...

    async def held(self, job_ids: list[str]) -> set[str]:
        """Which of these jobs the queue still holds: queued, deferred, running or finished."""
        ...


class Outcome(StrEnum):
    DONE = "DONE"
    SKIPPED = "SKIPPED"  # gone, or already done
    BUSY = "BUSY"  # another delivery holds the lease
    RETRY = "RETRY"
    FAILED = "FAILED"


# Tasks that hold a core for seconds (a 100-page PDF chunk). A worker runs one of them at a
# time and leaves the rest queued (workers.worker), so an order's chunks spread over every
# worker; their job ids carry a mark, since a worker sees only the ids in the queue.
CPU_BOUND_TASKS = frozenset({"render_pdf_chunk"})
CPU_BOUND_MARK = ":cpu"


def job_id(message_id: int, task: str = "") -> str:
    return f"outbox-{message_id}{CPU_BOUND_MARK if task in CPU_BOUND_TASKS else ''}"


def is_cpu_bound(job_id: str) -> bool:
    return job_id.endswith(CPU_BOUND_MARK)


async def add(task: str, payload: dict[str, Any], *, using_db: BaseDBAsyncClient) -> OutboxMessage:
    """Record work to do once the caller's transaction commits."""
    return await OutboxMessage.create(
        task=task, payload=payload, trace_context=tracing.traceparent(), using_db=using_db
    )


_listeners: set[asyncio.Event] = set()


def notify() -> None:
    """Wake this process's relay: a transaction with outbox rows has committed."""
    for event in _listeners:
        event.set()


def listen() -> asyncio.Event:
    event = asyncio.Event()
    _listeners.add(event)
    return event


def unlisten(event: asyncio.Event) -> None:
    _listeners.discard(event)


async def lost_jobs(queue: JobQueue, *, limit: int = 500) -> list[tuple[int, str]]:
    """ENQUEUED rows whose job the queue no longer holds: Redis lost it, or the job ended without a result."""
    enqueued: list[tuple[int, str]] = await (
        OutboxMessage.filter(status=OutboxStatus.ENQUEUED, enqueued_at__lt=clock.now() - REOFFER_AFTER)
        .order_by("id")
        .limit(limit)
        .values_list("id", "task")
    )
    if not enqueued:
        return []
    held = await queue.held([job_id(message_id, task) for message_id, task in enqueued])
    return [(message_id, task) for message_id, task in enqueued if job_id(message_id, task) not in held]


async def relay_pending(queue: JobQueue, *, limit: int = 500) -> int:
    """Hand pending rows, and enqueued rows whose job was lost, to the queue; a queue error propagates."""
    now = clock.now()
    rows: list[tuple[int, str]] = await (
        OutboxMessage.filter(status=OutboxStatus.PENDING).order_by("id").limit(limit).values_list("id", "task")
    )
    lost = await lost_jobs(queue, limit=limit)
    if lost:
        log.info("outbox: %d enqueued jobs no longer in the queue, offered again", len(lost))
    for message_id, task in rows + lost:
        await queue.enqueue(RUN_OUTBOX, message_id, job_id=job_id(message_id, task))
        await OutboxMessage.filter(id=message_id, status__in=[OutboxStatus.PENDING, OutboxStatus.ENQUEUED]).update(
            status=OutboxStatus.ENQUEUED, enqueued_at=now
        )
    return len(rows)


async def run(
    message_id: int,
    handlers: Mapping[str, Handler],
    *,
    failure_hooks: Mapping[str, FailureHook] | None = None,
    lease: timedelta = LEASE,
) -> Outcome:
    """Run one outbox row at most once to completion; failures retry, then stay FAILED and visible."""
    now = clock.now()
    claimed = await OutboxMessage.filter(
        Q(locked_until=None) | Q(locked_until__lt=now),
        id=message_id,
        status__in=[OutboxStatus.PENDING, OutboxStatus.ENQUEUED],
    ).update(locked_until=now + lease, attempts=F("attempts") + 1)
    if not claimed:
        message = await OutboxMessage.filter(id=message_id).first()
        if message is None or message.status in (OutboxStatus.DONE, OutboxStatus.FAILED):
            return Outcome.SKIPPED
        return Outcome.BUSY
    message = await OutboxMessage.get(id=message_id)
    attributes = {"outbox.task": message.task}
    hold = Hold(message.id, message.attempts, lease)
    with tracing.span(f"outbox {message.task}", links=(message.trace_context,), attributes=attributes):
        outcome = await _run_claimed(message, handlers, failure_hooks, hold)
    # Task names are the code's (handlers' keys), never a caller's: a bounded label.
    RUNS.labels(message.task if message.task in handlers else "unknown", outcome.value.lower()).inc()
    return outcome


class Hold:
    """A delivery's hold on its row. Each claim adds one to `attempts`, so the count it read
    names the holder: renewing and finishing compare it, and a later claim makes both fail."""

    def __init__(self, message_id: int, attempt: int, lease: timedelta) -> None:
        self.message_id = message_id
        self.attempt = attempt
        self.lease = lease
        self.lost = False

    def _mine(self) -> Any:
        return OutboxMessage.filter(
            id=self.message_id, attempts=self.attempt, status__in=[OutboxStatus.PENDING, OutboxStatus.ENQUEUED]
        )

    async def renew(self) -> bool:
        """Push the lease on; False when another delivery has claimed the row (or it is finished)."""
        return bool(await self._mine().update(locked_until=clock.now() + self.lease))

    async def finish(self, **changes: Any) -> bool:
        """Record the outcome, only while this delivery still holds the row."""
        return bool(await self._mine().update(locked_until=None, **changes))

    async def heartbeat(self, work: asyncio.Future[None]) -> None:
        """Renew every lease/3 while `work` runs; cancel it once the row is no longer ours."""
        interval = self.lease.total_seconds() / BEATS_PER_LEASE
        while True:
            await asyncio.sleep(interval)
            try:
                async with asyncio.timeout(interval):
                    held = await self.renew()
            except Exception as exc:  # the database is slow or gone: try again next beat
                log.warning("outbox message %s: lease not renewed (%s)", self.message_id, type(exc).__name__)
                continue
            if not held:
                log.warning("outbox message %s: lease taken by another delivery, stopping", self.message_id)
                self.lost = True
                work.cancel()
                return


async def _held_while(hold: Hold, work: Awaitable[None]) -> None:
    """Await `work` with its lease renewed meanwhile; CancelledError if the lease was lost."""
    task = asyncio.ensure_future(work)
    beat = asyncio.create_task(hold.heartbeat(task))
    try:
        await task
    finally:
        task.cancel()
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat


async def _run_claimed(
    message: OutboxMessage,
    handlers: Mapping[str, Handler],
    failure_hooks: Mapping[str, FailureHook] | None,
    hold: Hold,
) -> Outcome:
    handler = handlers.get(message.task)
    started = time.perf_counter()
    try:
        if handler is None:
            raise LookupError(f"no handler for outbox task {message.task!r}")
        await _held_while(hold, handler(message.payload, message.id))
        RUN_SECONDS.labels(message.task).observe(time.perf_counter() - started)
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if not hold.lost or (current is not None and current.cancelling()):
            raise  # the job itself is cancelled (its timeout, a shutdown); the lease lapses
        return Outcome.BUSY  # another delivery holds the row now and finishes it
    except Exception as exc:  # any failure is recorded on the row, never lost
        log.exception("outbox message %s (%s) failed, attempt %s", message.id, message.task, message.attempts)
        final = message.attempts >= MAX_ATTEMPTS or handler is None
        error = f"{type(exc).__name__}: {exc}"[:2000]
        if not await hold.finish(status=OutboxStatus.FAILED if final else message.status, last_error=error):
            return Outcome.BUSY
        hook = (failure_hooks or {}).get(message.task)
        if final and hook is not None:
            try:
                await hook(message.payload, error)
            except Exception:
                log.exception("failure hook of outbox message %s (%s) failed", message.id, message.task)
        return Outcome.FAILED if final else Outcome.RETRY
    if not await hold.finish(status=OutboxStatus.DONE, done_at=clock.now(), last_error=None):
        log.warning("outbox message %s: ran, but another delivery holds it now; not recorded", message.id)
        return Outcome.BUSY
    return Outcome.DONE


def retry_delay(attempts: int) -> timedelta:
    return timedelta(seconds=min(300, 2**attempts))


async def counts_by_status() -> dict[str, int]:
    """How many outbox messages are in each status (every status named, zeros included)."""
    rows = await OutboxMessage.annotate(n=Count("id")).group_by("status").values_list("status", "n")
    counts = {str(status): int(n) for status, n in rows}
    return {status.value: counts.get(status.value, 0) for status in OutboxStatus}


async def oldest_pending_age_seconds() -> float:
    """How long the oldest row not yet done has waited (0 when none waits): a stuck queue grows it."""
    oldest = (
        await OutboxMessage.filter(status__in=[OutboxStatus.PENDING, OutboxStatus.ENQUEUED])
        .order_by("id")  # the (status, id) index; ids grow with created_at
        .first()
        .values_list("created_at", flat=True)
    )
    return max(0.0, (clock.now() - oldest).total_seconds()) if isinstance(oldest, datetime) else 0.0


async def failed_messages(limit: int = 100) -> list[OutboxMessage]:
    return await OutboxMessage.filter(status=OutboxStatus.FAILED).order_by("-id").limit(limit)


async def retry_failed(message_id: int) -> OutboxMessage:
    """Put a failed row back in line (staff)."""
    changed = await OutboxMessage.filter(id=message_id, status=OutboxStatus.FAILED).update(
        status=OutboxStatus.PENDING, attempts=0, locked_until=None, enqueued_at=None
    )
    if not changed:
        raise DomainError(ErrorCode.NOT_FOUND, "No failed outbox message with that id.", "id")
    notify()
    return await OutboxMessage.get(id=message_id)
