"""Background jobs counted and timed by task and outcome; webhook deliveries by outcome."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from arq import Retry

from infra import metrics, tracing

log = logging.getLogger(__name__)

JOBS = metrics.counter(
    "vouchsafe_jobs_total", "Background jobs run, by task and outcome (ok, retry, error, ...).", ["task", "outcome"]
)
JOB_SECONDS = metrics.histogram(
    "vouchsafe_job_duration_seconds", "Background job duration by task.", ["task"], metrics.JOB_BUCKETS
)
JOB_RETRIES = metrics.counter("vouchsafe_job_retries_total", "Jobs deferred to run again, by task.", ["task"])
WEBHOOK_DELIVERIES = metrics.counter(
    "vouchsafe_webhook_deliveries_total", "Webhook delivery attempts by outcome.", ["outcome"]
)

Job = TypeVar("Job", bound=Callable[..., Awaitable[Any]])


def instrumented(task: str, job: Job) -> Job:
    """The job, counted and timed under `task` (a name of the code's, never a caller's)."""

    @functools.wraps(job)
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        outcome = "error"
        try:
            if tracing.enabled:
                attributes = {"job.task": task, "job.try": ctx.get("job_try", 0)}
                with tracing.span(f"job {task}", kind="consumer", attributes=attributes):
                    result = await job(ctx, *args, **kwargs)
            else:
                result = await job(ctx, *args, **kwargs)
            outcome = "ok"
            return result
        except Retry:
            outcome = "retry"
            JOB_RETRIES.labels(task).inc()
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            seconds = time.perf_counter() - started
            JOBS.labels(task, outcome).inc()
            JOB_SECONDS.labels(task).observe(seconds)
            log.info("job %s: %s", task, outcome, extra={"duration_ms": round(seconds * 1000, 1)})

    return cast(Job, run)
