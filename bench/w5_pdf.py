"""W5: the vouchers PDF of 1,000 and 10,000 vouchers, rendered by worker processes, against bare xhtml2pdf.

  A  one worker process (`vouchsafe worker`'s own, spawned by `Workers`) renders the order's
     PDF the way production does: render_pdf row relayed to arq on Redis, chunks of 100
     rendered and stored, joined, the file stored in parts; timed from the relay to READY;
  B  bare xhtml2pdf: the same template, every voucher in one call (the same rows read and
     decrypted first, nothing stored), in a helper process (`baseline_run`);
  C  the same as A with two worker processes taking the chunks of the order.
Targets: per-page time A <= 1.3 x B; C's page rate >= 1.7 x A's. Each round runs A, B, C
(then C, B, A). Both workers are started once (untimed); the second is frozen (SIGSTOP)
while A runs, so a one-worker run has exactly one worker and no run pays a start-up.

W5 has a database of its own (a worker relays every pending outbox row it finds, and the
shared data set's workers must not render 2,000 PDFs), and its own arq queue name.
10,000 vouchers take minutes a variant: a full run only (--quick renders 50, one chunk).
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import multiprocessing
import os
import signal
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from pypdf import PdfReader
from tortoise.transactions import in_transaction
from xhtml2pdf.config.resources import ResourceAccessPolicy

from bench import seed
from bench.harness import BenchContext, Comparison, fits, skipped
from bench.processes import memory_mb, spawn_pool, tree_cpu_seconds
from bench.stores import throwaway_database
from infra import database
from infra.redis import ArqQueue, open_redis
from models import (
    ORM_APPS,
    OrderEvent,
    OrderEventKind,
    OutboxMessage,
    OutboxStatus,
    PdfPart,
    PdfStatus,
    VoucherOrder,
)
from services import codes, outbox, pdf, pdf_render
from settings import load_settings
from workers.options import worker_options
from workers.worker import VouchsafeWorker

NEEDS_DATA_SET = False
PER_PAGE_MAX = 1.3
TWO_WORKERS_MIN = 1.7
# Bounded memory: a worker's peak after 10,000 vouchers against its peak after 1,000.
P03_GROWTH_MB = 50
# (vouchers, rounds): --quick renders one chunk (the two-worker figure means nothing there).
PLAN_QUICK = [(50, 2)]
PLAN_FULL = [(1_000, 3), (10_000, 2)]


def _worker(env: dict[str, str], health_key: str, lifetime: int) -> None:
    """In a spawned process: `vouchsafe worker` as its command builds it, with a health-check key of its own.

    arq records the key on its first poll, after start-up (database open, relay running): W5
    waits for it before timing anything. SIGALRM ends the process after `lifetime` whatever
    becomes of the bench.
    """
    os.environ.update(env)
    signal.alarm(lifetime)
    settings = load_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s w5-worker %(levelname)s %(message)s")
    VouchsafeWorker(**worker_options(settings, embedded=False), health_check_key=health_key).run()


class Workers:
    """Two worker processes on W5's database and queue; the second can be frozen and thawed."""

    def __init__(self, ctx: BenchContext, database_url: str, queue: str, data_dir: str) -> None:
        self.queue = queue
        self.lifetime = int(max(120, ctx.time_left() + 120))
        self.env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": ctx.redis_url,
            "VOUCHSAFE_QUEUE_NAME": queue,
            "VOUCHSAFE_SECRET_KEY": base64.urlsafe_b64encode(ctx.secret_key).decode(),
            "VOUCHSAFE_CODE_KEY": base64.urlsafe_b64encode(ctx.code_key).decode(),
            "VOUCHSAFE_DATA_DIR": data_dir,
            "VOUCHSAFE_PUBLIC_URL": seed.PUBLIC_URL,
            "VOUCHSAFE_LOG_LEVEL": "WARNING",
            "VOUCHSAFE_DB_POOL_SIZE": "4",
        }
        self.processes: list[Any] = []
        self.frozen = False

    def health_key(self, index: int) -> str:
        return f"{self.queue}:bench-health:{index}"

    async def start(self, redis: Any) -> None:
        spawn = multiprocessing.get_context("spawn")
        for index in range(2):
            process = spawn.Process(target=_worker, args=(self.env, self.health_key(index), self.lifetime), daemon=True)
            process.start()
            self.processes.append(process)
        async with asyncio.timeout(90):
            for index, process in enumerate(self.processes):
                while not await redis.exists(self.health_key(index)):
                    if not process.is_alive():
                        raise RuntimeError(f"worker {index} exited with {process.exitcode}")
                    await asyncio.sleep(0.1)

    def cpu_seconds(self) -> list[float]:
        """User + system CPU time of each worker process so far, to see how a run was shared."""
        return [tree_cpu_seconds(process.pid) for process in self.processes]

    def peak_rss_mb(self) -> list[float]:
        """Each worker's peak resident memory since it started, in MB."""
        return [memory_mb("VmHWM", process.pid) for process in self.processes]

    def use(self, count: int) -> None:
        """One worker (the second frozen) or two."""
        freeze = count == 1
        if freeze != self.frozen:
            os.kill(self.processes[1].pid, signal.SIGSTOP if freeze else signal.SIGCONT)
            self.frozen = freeze

    async def stop(self) -> None:
        if self.frozen:
            os.kill(self.processes[1].pid, signal.SIGCONT)
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            await asyncio.to_thread(process.join, 15)
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join, 5)


async def _restart(order_id: int) -> None:
    """A fresh render of the order: what an operator's regeneration would do."""
    tasks = (pdf.RENDER_PDF, pdf.RENDER_PDF_CHUNK, pdf.ASSEMBLE_PDF)
    await VoucherOrder.filter(id=order_id).update(pdf_status=PdfStatus.FAILED)
    await PdfPart.filter(order_id=order_id).delete()
    await OutboxMessage.filter(task__in=tasks, status=OutboxStatus.PENDING).update(status=OutboxStatus.DONE)
    async with in_transaction() as conn:
        await outbox.add(pdf.RENDER_PDF, {"order_id": order_id}, using_db=conn)


def baseline_run(url: str, order_id: int, key: bytes) -> dict[str, float]:
    """B, in the helper process: every voucher of the order in one xhtml2pdf call; its seconds and pages."""

    async def work() -> tuple[float, bytes]:
        await database.open_db(url, pool_size=2, apps=ORM_APPS)
        try:
            started = time.perf_counter()
            cipher = codes.CodeCipher(key)
            order: pdf_render.PdfOrder | None = None
            vouchers: list[pdf_render.PdfVoucher] = []
            for chunk in range(10_000 // pdf.CHUNK):  # the service's own reads, all of them
                read = await pdf._chunk_input(order_id, chunk, cipher)  # noqa: SLF001  # timed apart from the render
                assert read is not None
                order = read[0]
                if not read[1]:
                    break
                vouchers.extend(read[1])
            assert order is not None
            unbounded = ResourceAccessPolicy.server(
                pdf_render.TEMPLATE_DIR,
                extra_roots=tuple({p.parent for p in pdf_render.FONTS.values()}),
                allow_remote=False,
                max_document_bytes=None,
                max_render_seconds=None,
            )
            render = pdf_render.render_vouchers
            data = await asyncio.to_thread(render, order, vouchers, public_url=seed.PUBLIC_URL, policy=unbounded)
            return time.perf_counter() - started, data
        finally:
            await database.close_db()

    seconds, data = asyncio.run(work())
    return {"seconds": seconds, "pages": len(PdfReader(io.BytesIO(data)).pages)}


async def _render(order_id: int, queue: ArqQueue, limit_seconds: float) -> tuple[float, int]:
    """A fresh render of the order by the running workers: seconds from the relay to READY, and its pages."""
    await _restart(order_id)
    started = time.perf_counter()
    await outbox.relay_pending(queue)
    async with asyncio.timeout(limit_seconds):
        while True:
            [row] = await VoucherOrder.filter(id=order_id).values("pdf_status", "pdf_error")
            if row["pdf_status"] == PdfStatus.READY:
                break
            if row["pdf_status"] == PdfStatus.FAILED and row["pdf_error"]:  # _restart's FAILED has no reason
                raise RuntimeError(f"the PDF of order {order_id} failed: {row['pdf_error']}")
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        # Untimed: every row of the render done (the workers idle again) before anything else runs.
        while True:
            if not await OutboxMessage.filter(status__in=[OutboxStatus.PENDING, OutboxStatus.ENQUEUED]).exists():
                break
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # arq's own bookkeeping after the last job
    event = await OrderEvent.filter(order_id=order_id, kind=OrderEventKind.PDF_READY).order_by("-id").first()
    return elapsed, int(event.data["pages"]) if event else 0


async def _order(size: int, code_key: bytes) -> int:
    order_id = await seed.order_of(f"W5 Partner {size}", size, code_key)
    await seed.quiet_outbox()  # the order's own render_pdf row: each run starts its own
    return order_id


async def measure(
    ctx: BenchContext, url: str, workers: Workers, queue: ArqQueue, helper: ProcessPoolExecutor, size: int, rounds: int
) -> tuple[list[Comparison], float]:
    """The two comparisons at one size, and the seconds a round took per voucher (to plan the next size)."""
    per_page = Comparison(
        workload=f"W5 PDF of {size:,} vouchers",
        a_label="one worker process, chunks of 100 (ms/page)",
        b_label="bare xhtml2pdf, one call (ms/page)",
        unit="ms/page",
        higher_is_better=False,
        target=f"per-page time A/B <= {PER_PAGE_MAX}",
        max_ratio=PER_PAGE_MAX,
    )
    two = Comparison(
        workload=f"W5 two workers, {size:,} vouchers",
        a_label="two worker processes (pages/s)",
        b_label="one worker process (pages/s)",
        unit="pages/s",
        higher_is_better=True,
        target=f"page rate A/B >= {TWO_WORKERS_MIN}",
        min_ratio=TWO_WORKERS_MIN,
    )
    order_id = await _order(size, ctx.code_key)
    pages: list[int] = []
    shares: list[float] = []
    limit_seconds = 120 + size * 0.1

    async def rendered(count: int) -> float:
        workers.use(count)
        before = workers.cpu_seconds()
        seconds, made = await _render(order_id, queue, limit_seconds)
        pages.append(made)
        if count == 2:
            used = [after - b for after, b in zip(workers.cpu_seconds(), before, strict=True)]
            shares.append(min(used) / max(sum(used), 1e-9))
        return seconds

    async def bare() -> float:
        result = await asyncio.to_thread(
            lambda: helper.submit(baseline_run, url, order_id, ctx.code_key).result(timeout=limit_seconds)
        )
        pages.append(int(result["pages"]))
        return float(result["seconds"])

    last = 0.0
    for number in range(1, rounds + 1):
        if number > 1 and not fits(ctx.deadline, last):
            print(f"  W5: no time for another round of {size:,}, stopping after {number - 1}", flush=True)
            break
        begun = time.monotonic()
        times: dict[str, float] = {}
        for variant in "ABC" if number % 2 else "CBA":
            times[variant] = await (rendered(1) if variant == "A" else bare() if variant == "B" else rendered(2))
        a_ms, b_ms = times["A"] * 1000 / size, times["B"] * 1000 / size
        per_page.rounds.append((a_ms, b_ms))
        two.rounds.append((size / times["C"], size / times["A"]))
        per_page.show(number, a_ms, b_ms)
        two.show(number, size / times["C"], size / times["A"])
        last = time.monotonic() - begun
    two.extra["the smaller of the two workers' CPU shares"] = (
        ", ".join(f"{share:.0%}" for share in shares) + " (50% when the chunks are spread evenly)",
        None,
    )
    for c in (per_page, two):
        c.check(
            "every render made one page per voucher",
            bool(pages) and set(pages) == {size},
            f"pages {sorted(set(pages))}",
        )
    return [per_page, two], last / size


def _warm() -> None:
    """Nothing: makes the helper process import this module (and the PDF toolkit) before any timing."""


async def run(ctx: BenchContext) -> list[Comparison]:
    plan = PLAN_QUICK if ctx.quick else PLAN_FULL
    queue_name = ctx.name("w5")
    results: list[Comparison] = []
    async with throwaway_database(ctx.server_url, queue_name) as url:
        await database.open_db(url, pool_size=4, apps=ORM_APPS)
        redis = await open_redis(ctx.redis_url, queue_name=queue_name)
        helper = spawn_pool()
        try:
            with tempfile.TemporaryDirectory(prefix="bench-w5-") as data_dir:
                workers = Workers(ctx, url, queue_name, data_dir)
                try:
                    warm = asyncio.to_thread(helper.submit(_warm).result)  # helper start-up, untimed
                    await asyncio.gather(workers.start(redis), warm)
                    pace, first_peak = 0.0, 0.0
                    for size, rounds in plan:
                        # A round of this size at the pace of the last one, plus placing the order: else skip it.
                        if results and not fits(ctx.deadline, pace * size + 60):
                            why = f"not run: {ctx.time_left():.0f} s left, too little"
                            results.append(skipped(f"W5 PDF of {size:,} vouchers", "ms/page", why))
                            continue
                        measured, pace = await measure(ctx, url, workers, ArqQueue(redis), helper, size, rounds)
                        # Chunked rendering keeps a worker's memory flat as orders grow.
                        peaks = workers.peak_rss_mb()
                        first_peak = first_peak or max(peaks)
                        grown = max(peaks) - first_peak
                        text = ", ".join(f"{peak:.0f} MB" for peak in peaks)
                        if size != plan[0][0]:
                            text += f"; +{grown:.0f} MB over {plan[0][0]:,} vouchers (target <= {P03_GROWTH_MB} MB)"
                        measured[0].extra["workers' peak RSS so far (bounded memory)"] = (text, grown <= P03_GROWTH_MB)
                        results += measured
                finally:
                    await workers.stop()
        finally:
            helper.shutdown(cancel_futures=True)
            await redis.aclose()
            await database.close_db()
    return results
