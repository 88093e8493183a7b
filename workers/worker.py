"""The arq worker of vouchsafe, in its own process (`vouchsafe worker`) or in-process (embedded)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from arq.worker import Worker
from redis.exceptions import RedisError

from infra.redis import open_redis
from infra.waits import woken
from services import outbox
from settings import Settings
from workers.options import worker_options
from workers.tasks import in_progress_seconds

log = logging.getLogger(__name__)

REDIS_RETRY_SECONDS = 1.0
STOP_GRACE_SECONDS = 5.0
# How far past arq's window (100 due jobs) a poll reads when that window is CPU-bound jobs
# it declines: short jobs wait behind a backlog only past 1,100 chunks (11 orders of 10,000).
READ_PAST_CPU_BOUND = 1_000


class VouchsafeWorker(Worker):
    """arq's worker loop, made to outlive a Redis outage and to share CPU-bound jobs out.

    arq's own `main` ends on the first connection error, and it logs the server's
    INFO, a command the in-process stand-in does not have. This loop keeps polling
    through an outage (jobs wait in the outbox meanwhile) and skips that call.

    arq claims up to `max_jobs` queued jobs at each poll and keeps them, so the first
    worker to poll took every chunk of an order's PDF while the others idled. This one
    runs one CPU-bound job (services.outbox.CPU_BOUND_TASKS) at a time and leaves the
    others queued for other workers; short jobs (e-mails) still run beside it. Both override
    arq internals, checked against upstream in tests/test_library_patches.py.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # arq marks a job in progress for its longest timeout: a killed worker's job would wait that
        # long. The mark follows the outbox lease instead, renewed by the job's heartbeat (workers.tasks).
        if "settings" in self.ctx:  # vouchsafe's own workers always; a bare test worker keeps arq's
            self.in_progress_timeout_s = in_progress_seconds(self.ctx["settings"])
        self._stop_requested = False
        self._wake = asyncio.Event()  # set when a CPU-bound job ends or a stop is asked

    async def main(self) -> None:
        if self._pool is None:  # a standalone worker (`vouchsafe worker`) opens its own connection
            self._pool = await self.open_pool()
        self.ctx["redis"] = self.pool
        if self.on_startup:
            await self.on_startup(self.ctx)
        while not self._stop_requested:
            try:
                await self._poll_iteration()
                if self.burst and await self.pool.zcard(self.queue_name) == 0:
                    await asyncio.gather(*self.tasks.values())
                    return
                delay = self.poll_delay_s
            except (RedisError, OSError) as exc:
                log.warning("worker lost Redis, retrying in %.0fs: %s", REDIS_RETRY_SECONDS, exc)
                delay = REDIS_RETRY_SECONDS
            # Woken early when a CPU-bound job ends (take the next chunk now) or a stop is asked.
            await woken(self._wake, delay)
            self._wake.clear()

    async def open_pool(self) -> ArqRedis:
        """The client arq's create_pool would make, on the project's pool (infra.redis)."""
        settings: Settings = self.ctx["settings"]
        redis = await open_redis(
            settings.redis_url, queue_name=self.queue_name, command_timeout=settings.redis_timeout_seconds
        )
        redis.job_serializer, redis.job_deserializer = self.job_serializer, self.job_deserializer
        redis.expires_extra_ms = self.expires_extra_ms
        return redis

    def _cpu_bound_running(self) -> bool:
        return any(not task.done() for job_id, task in self.tasks.items() if outbox.is_cpu_bound(job_id))

    async def _read_past_cpu_bound(self, job_ids: list[bytes]) -> list[bytes]:
        """The due jobs, read on past a full window of CPU-bound ones (a big order's chunks).

        arq reads the first `queue_read_limit` due jobs only. When they are all chunks that
        this worker declines, the e-mails queued behind them would wait for the whole PDF.
        """
        others = sum(1 for job_id in job_ids if not outbox.is_cpu_bound(job_id.decode()))
        if len(job_ids) < self.queue_read_limit or others >= self.max_jobs - self.job_counter:
            return job_ids
        further: list[bytes] = await self.pool.zrangebyscore(
            self.queue_name, min=float("-inf"), max=timestamp_ms(), start=len(job_ids), num=READ_PAST_CPU_BOUND
        )
        return job_ids + [job_id for job_id in further if not outbox.is_cpu_bound(job_id.decode())]

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """arq's claim, offered at most one CPU-bound job: the first that no worker runs yet."""
        job_ids = await self._read_past_cpu_bound(job_ids)
        cpu = [job_id for job_id in job_ids if outbox.is_cpu_bound(job_id.decode())]
        offered = [job_id for job_id in job_ids if not outbox.is_cpu_bound(job_id.decode())]
        if cpu and not self._cpu_bound_running():
            # Jobs running elsewhere stay in the queue until they end: skip them, or a second
            # worker would wait behind the first one's chunk instead of taking the next.
            async with self.pool.pipeline(transaction=False) as pipe:
                for job_id in cpu:
                    pipe.exists(in_progress_key_prefix + job_id.decode())
                running = await pipe.execute()
            free = [job_id for job_id, taken in zip(cpu, running, strict=True) if not taken]
            offered[:0] = free[:1]
        before = set(self.tasks)
        await super().start_jobs(offered)
        for started, task in self.tasks.items():
            if started not in before and outbox.is_cpu_bound(started):
                task.add_done_callback(lambda _: self._wake.set())

    async def finish(self, main: asyncio.Task[None], *, grace: float = STOP_GRACE_SECONDS) -> None:
        """End the poll loop between two iterations, then stop (the in-process and test workers).

        Cancelling `main` mid-iteration would cut arq's Redis pipelines (a job claim, a
        WATCH) in half and leave their connections to the garbage collector.
        """
        self._stop_requested = True
        self._wake.set()
        _, pending = await asyncio.wait({main}, timeout=grace)
        for task in pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await main
        await self.stop(grace=grace)
        # arq's close() is what runs on_shutdown, and it also closes the pool, which is not this
        # worker's here: the webhook dispatcher started by on_startup stops with it.
        if self.on_shutdown is not None:
            await self.on_shutdown(self.ctx)

    async def stop(self, *, grace: float = STOP_GRACE_SECONDS) -> None:
        """Let running jobs finish for a moment, then end the rest (the in-process worker, at shutdown).

        A job cut off here leaves its outbox row to be taken again once the lease lapses;
        finishing it is better (a render cut off mid-way also leaves its temporary files behind).
        """
        running = [task for task in self.tasks.values() if not task.done()]
        if running:
            await asyncio.wait(running, timeout=grace)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


def embedded_worker(settings: Settings, redis: ArqRedis, *, burst: bool = False) -> VouchsafeWorker:
    """The worker inside the API process, on the process's Redis connection."""
    return VouchsafeWorker(
        redis_pool=redis, handle_signals=False, burst=burst, poll_delay=0.1, **worker_options(settings, embedded=True)
    )


def standalone_worker(settings: Settings) -> VouchsafeWorker:
    return VouchsafeWorker(**worker_options(settings, embedded=False))
