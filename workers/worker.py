"""The arq worker of vouchsafe, in its own process (`vouchsafe worker`) or in-process (embedded)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from arq.connections import ArqRedis, create_pool
from arq.worker import Worker
from redis.exceptions import RedisError

from settings import Settings
from workers.options import worker_options

log = logging.getLogger(__name__)

REDIS_RETRY_SECONDS = 1.0
STOP_GRACE_SECONDS = 5.0


class VouchsafeWorker(Worker):
    """arq's worker loop, made to outlive a Redis outage.

    arq's own `main` ends on the first connection error, and it logs the server's
    INFO, a command the in-process stand-in does not have. This loop keeps polling
    through an outage (jobs wait in the outbox meanwhile) and skips that call.
    """

    async def main(self) -> None:
        if self._pool is None:  # a standalone worker (`vouchsafe worker`) opens its own connection
            self._pool = await create_pool(
                self.redis_settings,
                job_deserializer=self.job_deserializer,
                job_serializer=self.job_serializer,
                default_queue_name=self.queue_name,
                expires_extra_ms=self.expires_extra_ms,
            )
        self.ctx["redis"] = self.pool
        if self.on_startup:
            await self.on_startup(self.ctx)
        stopping = self._stopping()
        while not stopping.is_set():
            try:
                await self._poll_iteration()
                if self.burst and await self.pool.zcard(self.queue_name) == 0:
                    await asyncio.gather(*self.tasks.values())
                    return
                delay = self.poll_delay_s
            except (RedisError, OSError) as exc:
                log.warning("worker lost Redis, retrying in %.0fs: %s", REDIS_RETRY_SECONDS, exc)
                delay = REDIS_RETRY_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=delay)

    def _stopping(self) -> asyncio.Event:
        event: asyncio.Event | None = getattr(self, "_stop_event", None)
        if event is None:
            event = self._stop_event = asyncio.Event()
        return event

    async def finish(self, main: asyncio.Task[None], *, grace: float = STOP_GRACE_SECONDS) -> None:
        """End the poll loop between two iterations, then stop (the in-process and test workers).

        Cancelling `main` mid-iteration would cut arq's Redis pipelines (a job claim, a
        WATCH) in half and leave their connections to the garbage collector.
        """
        self._stopping().set()
        _, pending = await asyncio.wait({main}, timeout=grace)
        for task in pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await main
        await self.stop(grace=grace)

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
