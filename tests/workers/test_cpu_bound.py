"""CPU-bound jobs (PDF chunks) spread over the workers: each runs one at a time and leaves the rest queued.

Both workers share one Redis (the in-process stand-in embedded, the real one on the
PostgreSQL run) and one queue of the test's own. The control puts arq's own claim back,
which lets the first worker to poll take every job: the test would catch a regression
to it.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

from arq.worker import Worker, func

from infra.redis import open_redis
from services import outbox, pdf
from settings import Settings
from workers.worker import VouchsafeWorker

JOBS = 6
SECONDS = 0.3


def test_pdf_chunks_are_the_cpu_bound_tasks() -> None:
    assert {pdf.RENDER_PDF_CHUNK} == outbox.CPU_BOUND_TASKS
    assert outbox.is_cpu_bound(outbox.job_id(7, pdf.RENDER_PDF_CHUNK))
    assert not outbox.is_cpu_bound(outbox.job_id(7, pdf.RENDER_PDF))
    assert outbox.job_id(7, "send_email") == "outbox-7"  # other ids as they always were


class ArqClaim(VouchsafeWorker):
    """The control: arq's claim of up to max_jobs jobs at a poll, whatever they are."""

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        await Worker.start_jobs(self, job_ids)


def _worker(worker_class: type[VouchsafeWorker], redis: Any, queue: str, chunk: Any, short: Any, **ctx: Any) -> Any:
    """A worker of the test's queue, polling often, with the usual ten jobs at once."""
    return worker_class(
        functions=[func(chunk, name="chunk"), func(short, name="short")],
        redis_pool=redis,
        queue_name=queue,
        handle_signals=False,
        poll_delay=0.05,
        max_jobs=10,
        keep_result=0,
        ctx=ctx,
    )


async def _run(settings: Settings, worker_class: type[VouchsafeWorker]) -> dict[str, list[tuple[float, float]]]:
    """Six CPU-bound jobs and one short one through two workers: who ran what, when."""
    queue = f"{settings.queue_name}:cpu-{uuid.uuid4().hex[:6]}"
    redis = await open_redis(settings.redis_url, queue_name=queue)
    runs: dict[str, list[tuple[float, float]]] = {"w0": [], "w1": [], "short": []}
    loop = asyncio.get_running_loop()
    all_ran = asyncio.Event()

    def ran() -> None:
        if len(runs["w0"]) + len(runs["w1"]) == JOBS and runs["short"]:
            all_ran.set()

    async def chunk(ctx: dict[str, Any]) -> None:
        started = loop.time()
        await asyncio.sleep(SECONDS)  # stands for a render in a thread: the loop stays free
        runs[ctx["name"]].append((started, loop.time()))
        ran()

    async def short(ctx: dict[str, Any]) -> None:
        runs["short"].append((loop.time(), loop.time()))
        ran()

    workers = [_worker(worker_class, redis, queue, chunk, short, name=f"w{index}") for index in range(2)]
    tasks: list[asyncio.Task[None]] = []
    try:
        for index in range(JOBS):
            await redis.enqueue_job("chunk", _job_id=f"{queue}:{outbox.job_id(index, pdf.RENDER_PDF_CHUNK)}")
        await redis.enqueue_job("short", _job_id=f"{queue}:{outbox.job_id(JOBS, 'send_email')}")
        tasks = [asyncio.create_task(worker.main()) for worker in workers]
        await asyncio.wait_for(all_ran.wait(), timeout=JOBS * SECONDS * 3)
    finally:
        for worker, task in zip(workers, tasks, strict=False):
            await worker.finish(task)
        await redis.aclose()
    return runs


def _overlaps(spans: list[tuple[float, float]]) -> bool:
    spans = sorted(spans)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


async def test_two_workers_share_the_chunks_one_at_a_time_each(settings: Settings) -> None:
    runs = await _run(settings, VouchsafeWorker)
    assert sorted((len(runs["w0"]), len(runs["w1"]))) == [JOBS // 2, JOBS // 2]
    assert not _overlaps(runs["w0"])
    assert not _overlaps(runs["w1"])
    # the short job did not wait for a chunk to end
    first_chunk_end = min(end for spans in (runs["w0"], runs["w1"]) for _, end in spans)
    assert runs["short"][0][0] < first_chunk_end


async def test_control_arq_claim_lets_one_worker_take_every_chunk(settings: Settings) -> None:
    runs = await _run(settings, ArqClaim)
    assert sorted((len(runs["w0"]), len(runs["w1"]))) == [0, JOBS]


class NoReadPast(VouchsafeWorker):
    """The control: only arq's window of the first 100 due jobs is read."""

    async def _read_past_cpu_bound(self, job_ids: list[bytes]) -> list[bytes]:
        return job_ids


async def _short_job_behind_a_backlog(settings: Settings, worker_class: type[VouchsafeWorker]) -> bool:
    """150 chunks queued before an e-mail: does the e-mail run while the first chunk renders?"""
    queue = f"{settings.queue_name}:backlog-{uuid.uuid4().hex[:6]}"
    redis = await open_redis(settings.redis_url, queue_name=queue)
    short_ran = asyncio.Event()

    async def chunk(ctx: dict[str, Any]) -> None:
        await asyncio.sleep(30)  # a long render: the worker is busy with it for the whole test

    async def short(ctx: dict[str, Any]) -> None:
        short_ran.set()

    worker = _worker(worker_class, redis, queue, chunk, short)
    task: asyncio.Task[None] | None = None
    try:
        for index in range(150):
            await redis.enqueue_job("chunk", _job_id=f"{queue}:{outbox.job_id(index, pdf.RENDER_PDF_CHUNK)}")
        await redis.enqueue_job("short", _job_id=f"{queue}:{outbox.job_id(150, 'send_email')}")
        task = asyncio.create_task(worker.main())
        try:
            await asyncio.wait_for(short_ran.wait(), timeout=2)
        except TimeoutError:
            return False
        return True
    finally:
        if task is not None:
            await worker.finish(task, grace=0.1)
        await redis.delete(queue)
        await redis.aclose()


async def test_short_jobs_do_not_wait_behind_a_backlog_of_chunks(settings: Settings) -> None:
    assert await _short_job_behind_a_backlog(settings, VouchsafeWorker)


async def test_control_without_reading_past_the_window_the_short_job_waits(settings: Settings) -> None:
    assert not await _short_job_behind_a_backlog(settings, NoReadPast)
