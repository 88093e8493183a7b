"""The arq worker of vouchsafe, in its own process (`vouchsafe worker`) or in-process (embedded)."""

from __future__ import annotations

import asyncio
import logging

from arq.connections import ArqRedis
from arq.utils import poll
from arq.worker import Worker
from redis.exceptions import RedisError

from settings import Settings
from workers.options import worker_options

log = logging.getLogger(__name__)

REDIS_RETRY_SECONDS = 1.0


class VouchsafeWorker(Worker):
    """arq's worker loop, made to outlive a Redis outage.

    arq's own `main` ends on the first connection error, and it logs the server's
    INFO, a command the in-process stand-in does not have. This loop keeps polling
    through an outage (jobs wait in the outbox meanwhile) and skips that call.
    """

    async def main(self) -> None:
        self.ctx["redis"] = self.pool
        if self.on_startup:
            await self.on_startup(self.ctx)
        async for _ in poll(self.poll_delay_s):
            try:
                await self._poll_iteration()
                if self.burst and await self.pool.zcard(self.queue_name) == 0:
                    await asyncio.gather(*self.tasks.values())
                    return
            except (RedisError, OSError) as exc:
                log.warning("worker lost Redis, retrying in %.0fs: %s", REDIS_RETRY_SECONDS, exc)
                await asyncio.sleep(REDIS_RETRY_SECONDS)


def embedded_worker(settings: Settings, redis: ArqRedis, *, burst: bool = False) -> VouchsafeWorker:
    """The worker inside the API process, on the process's Redis connection."""
    return VouchsafeWorker(
        redis_pool=redis, handle_signals=False, burst=burst, poll_delay=0.1, **worker_options(settings, embedded=True)
    )


def standalone_worker(settings: Settings) -> VouchsafeWorker:
    return VouchsafeWorker(**worker_options(settings, embedded=False))
