"""How a worker is set up, for `vouchsafe worker` and for the in-process embedded worker."""

from __future__ import annotations

from typing import Any

from arq.connections import RedisSettings
from arq.cron import cron
from arq.worker import Function, func

from settings import Settings
from workers.metrics import Job, instrumented
from workers.tasks import (
    expire_vouchers,
    kept_in_progress,
    purge_idempotency_keys,
    remind_expiring_orders,
    run_outbox,
    shutdown,
    startup,
)

# Retries are ours (outbox attempts, lease waits); arq's count only needs to stay out of the way.
MAX_TRIES = 50


def _job(task: str, function: Job) -> Job:
    """A task as arq runs it: counted and timed, and its in-progress mark renewed while it runs (workers.tasks)."""
    return instrumented(task, kept_in_progress(function))


def functions(settings: Settings) -> list[Function]:
    # The job timeout caps a job's run; its outbox lease is shorter and renewed while it runs (services.outbox).
    job = _job("run_outbox", run_outbox)
    return [func(job, name="run_outbox", max_tries=MAX_TRIES, timeout=settings.job_timeout_seconds)]


def worker_options(settings: Settings, *, embedded: bool) -> dict[str, Any]:
    options: dict[str, Any] = {
        "functions": functions(settings),
        # unique: one run at a time across all workers; each job is idempotent anyway.
        "cron_jobs": [
            cron(_job("expire_vouchers", expire_vouchers), minute=set(range(0, 60, 10)), unique=True),
            cron(_job("remind_expiring_orders", remind_expiring_orders), minute=5, unique=True),
            cron(_job("purge_idempotency_keys", purge_idempotency_keys), minute=17, unique=True),
        ],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {"settings": settings, "embedded": embedded},
        # Results live in the outbox table; keeping none in Redis lets a retried
        # row be enqueued again under its job id.
        "keep_result": 0,
        # Up to ten jobs at once; CPU-bound ones (PDF chunks) one at a time, the rest left
        # queued for other workers (workers.worker.VouchsafeWorker.start_jobs).
        "max_jobs": 10,
        "queue_name": settings.queue_name,
        # arq holds a job's in-progress mark for the longest timeout of any function (cron
        # jobs included) plus 10 s: the default 300 s would delay a crashed worker's jobs.
        "job_timeout": settings.job_timeout_seconds,
    }
    if settings.redis_url:
        options["redis_settings"] = RedisSettings.from_dsn(settings.redis_url)
    return options
