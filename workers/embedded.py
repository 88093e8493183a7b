"""The in-process worker of the embedded default (no REDIS_URL)."""

from __future__ import annotations

import asyncio

from arq.connections import ArqRedis
from arq.utils import poll
from arq.worker import Worker

from settings import Settings
from workers.options import worker_options


class EmbeddedWorker(Worker):
    """arq's worker on the in-process Redis stand-in.

    arq's `main` logs the server's INFO, a command the stand-in does not have;
    this is the same loop without that call.
    """

    async def main(self) -> None:
        self.ctx["redis"] = self.pool
        if self.on_startup:
            await self.on_startup(self.ctx)
        async for _ in poll(self.poll_delay_s):
            await self._poll_iteration()
            if self.burst and await self.pool.zcard(self.queue_name) == 0:
                await asyncio.gather(*self.tasks.values())
                return


def embedded_worker(settings: Settings, redis: ArqRedis, *, burst: bool = False) -> EmbeddedWorker:
    return EmbeddedWorker(
        redis_pool=redis, handle_signals=False, burst=burst, poll_delay=0.1, **worker_options(settings, embedded=True)
    )
