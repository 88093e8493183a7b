"""arq's mark that a job runs follows the outbox lease: renewed while the job runs, short once its worker dies."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from typing import Any

from arq.constants import in_progress_key_prefix

from infra.redis import open_redis
from settings import Settings
from workers.options import worker_options
from workers.tasks import kept_in_progress
from workers.worker import VouchsafeWorker


async def test_a_running_job_renews_its_in_progress_mark(settings: Settings) -> None:
    short = replace(settings, job_lease_seconds=0.3)  # the mark: 10.3 s, renewed every 0.1 s
    redis = await open_redis(settings.redis_url, queue_name=settings.queue_name)
    job_id = f"test-{uuid.uuid4().hex[:8]}"
    key = in_progress_key_prefix + job_id
    left: list[int] = []

    async def slow(ctx: dict[str, Any]) -> str:
        await asyncio.sleep(1.0)
        left.append(await redis.pttl(key))
        return "done"

    try:
        await redis.set(key, b"1", px=400)  # as arq's claim would set it, here to lapse after 0.4 s
        assert await kept_in_progress(slow)({"redis": redis, "job_id": job_id, "settings": short}) == "done"
        assert left[0] > 9_000  # renewed to the lease + 10 s while it ran, not lapsed
    finally:
        await redis.delete(key)
        await redis.aclose()


async def test_a_workers_mark_lasts_the_lease_and_not_the_job_timeout(settings: Settings) -> None:
    chosen = replace(settings, job_lease_seconds=10, job_timeout_seconds=180)
    redis = await open_redis(settings.redis_url, queue_name=settings.queue_name)
    try:
        worker = VouchsafeWorker(redis_pool=redis, handle_signals=False, **worker_options(chosen, embedded=True))
        assert worker.in_progress_timeout_s == 20  # a killed worker's job is free after 20 s, not 190 s
    finally:
        await redis.aclose()
