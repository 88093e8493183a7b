"""Redis for the queue, rate limits and events: real Redis, or the in-process stand-in."""

from __future__ import annotations

from typing import Any

import fakeredis
from arq.connections import ArqRedis, RedisSettings, create_pool
from fakeredis.aioredis import FakeAsyncRedisConnection
from redis.asyncio import ConnectionPool

# One stand-in per process: the API, its in-process worker and its relay share it.
_FAKE_SERVER = fakeredis.FakeServer()


def fake_server() -> fakeredis.FakeServer:
    return _FAKE_SERVER


async def open_redis(redis_url: str | None, *, queue_name: str = "arq:queue") -> ArqRedis:
    if redis_url is None:
        pool = ConnectionPool(connection_class=FakeAsyncRedisConnection, server=_FAKE_SERVER)
        return ArqRedis(connection_pool=pool, default_queue_name=queue_name)
    return await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=queue_name)


class ArqQueue:
    """The outbox's JobQueue port on arq."""

    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis

    async def enqueue(self, function: str, *args: Any, job_id: str) -> None:
        # arq's job keys are global in Redis, not per queue: the queue name keeps the
        # ids of deployments (and databases) sharing one Redis apart. None back from
        # arq means the job is already queued or running: that is the dedupe.
        await self.redis.enqueue_job(function, *args, _job_id=f"{self.redis.default_queue_name}:{job_id}")
