"""A worker killed (kill -9) in the middle of a PDF render; a new one finishes it, once.

Real `vouchsafe worker` processes on real PostgreSQL and Redis. The test has a
database and a queue of its own (made from the run's): a worker relays and runs
every pending outbox row of its database, and the rows other tests leave pending
would otherwise be rendered first. Workers keep the default job timeout (180 s)
and outbox lease (10 s): arq offers a dead worker's job again once its in-progress
mark, renewed with the lease by the job's heartbeat, expires (lease + 10 s), and the
row is free by then; WAIT is well under the job timeout.
"""

from __future__ import annotations

import io
import secrets
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from pypdf import PdfReader

from infra import database
from infra.redis import ArqQueue, open_redis
from models import (
    ORM_APPS,
    OrderEvent,
    OrderEventKind,
    OutboxMessage,
    OutboxStatus,
    PdfChunk,
    PdfPart,
    PdfStatus,
    VoucherOrder,
)
from services import outbox, pdf
from services.catalogue import LineRequest
from settings import Settings
from tests.support.orders import partner, placed, stored_pdf
from tests.support.processes import command, deployed_env
from tests.support.running import wait_for
from tests.support.stores import REDIS_URL, admin_execute, with_database

pytestmark = pytest.mark.postgres

VOUCHERS = 400  # four chunks: three still rendering when the first is stored
WAIT = 90.0


class Workers:
    """`vouchsafe worker` subprocesses; every one still running is killed in `stop()`."""

    def __init__(self, settings: Settings, root: Path) -> None:
        self.settings = settings
        self.root = root
        self.processes: list[subprocess.Popen[bytes]] = []

    def env(self, data_dir: Path) -> dict[str, str]:
        assert REDIS_URL
        return deployed_env(
            self.settings,
            data_dir,
            redis_url=REDIS_URL,
            VOUCHSAFE_PUBLIC_URL=self.settings.public_url,
        )

    def start(self) -> subprocess.Popen[bytes]:
        n = len(self.processes) + 1
        data_dir = self.root / f"worker-{n}"
        data_dir.mkdir(parents=True, exist_ok=True)
        with (self.root / f"worker-{n}.log").open("ab") as log:
            process = subprocess.Popen(
                [*command(), "worker"],
                env=self.env(data_dir),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in sorted(self.root.glob("worker-*.log")))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=15)


@pytest.fixture
async def own_database(settings: Settings, database_url: str, tmp_path: Path) -> AsyncIterator[Settings]:
    """A database and a queue of this test's own, on the run's PostgreSQL and Redis; dropped after."""
    name = f"vouchsafe_f03_{secrets.token_hex(4)}"
    await admin_execute(f'CREATE DATABASE "{name}"')
    own = replace(settings, database_url=with_database(database_url, name), queue_name=f"{settings.queue_name}:f03")
    try:
        await database.migrate(own.database_url, apps=ORM_APPS)
        await database.open_db(own.database_url, pool_size=10, apps=ORM_APPS)
        try:
            yield own
        finally:
            await database.close_db()
    finally:
        await admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def workers(own_database: Settings, tmp_path: Path) -> Iterator[Workers]:
    running = Workers(own_database, tmp_path)
    try:
        yield running
    finally:
        running.stop()


class TestWorkerKilledMidRender:
    async def test_a_new_worker_finishes_the_pdf_once(self, own_database: Settings, workers: Workers) -> None:
        # given: an order of 400 vouchers, its outbox relayed to the queue
        settings = own_database
        actor = await partner(settings)
        order = await placed(
            settings,
            actor,
            LineRequest(product_code="BASIC_OV", quantity=VOUCHERS, validity_years=1, fqdns=1, wildcards=0),
        )
        redis = await open_redis(REDIS_URL, queue_name=settings.queue_name)
        try:
            assert await outbox.relay_pending(ArqQueue(redis)) >= 1
        finally:
            await redis.aclose()
        first = workers.start()

        async def some_chunk_stored() -> bool:
            assert first.poll() is None, workers.logs()
            return await PdfChunk.filter(order_id=order.id).exists()

        # when: the worker dies (kill -9) once a chunk is stored, the others still rendering
        await bounded(some_chunk_stored, workers, "no chunk stored")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=15)
        order_now = await VoucherOrder.get(id=order.id)
        assert order_now.pdf_status == PdfStatus.PENDING, "the render finished before the kill: make it larger"
        assert await PdfChunk.filter(order_id=order.id).count() < VOUCHERS // pdf.CHUNK
        # and a new worker starts
        workers.start()

        async def ready() -> bool:
            return await VoucherOrder.filter(id=order.id, pdf_status=PdfStatus.READY).exists()

        await bounded(ready, workers, "the PDF did not become READY")
        # then: one PDF, one READY event, one set of parts, every voucher a page, nothing left behind
        data = await stored_pdf(order, settings)
        assert len(PdfReader(io.BytesIO(data)).pages) == VOUCHERS
        assert await OrderEvent.filter(order_id=order.id, kind=OrderEventKind.PDF_READY).count() == 1
        assert await OrderEvent.filter(order_id=order.id, kind=OrderEventKind.PDF_FAILED).count() == 0
        parts = await PdfPart.filter(order_id=order.id).order_by("part").values_list("part", flat=True)
        assert list(parts) == list(range(-(-len(data) // pdf.PART_BYTES)))
        assert await PdfChunk.filter(order_id=order.id).count() == 0

        async def rows_done() -> bool:
            rows = await OutboxMessage.filter(task__in=[pdf.RENDER_PDF, pdf.RENDER_PDF_CHUNK, pdf.ASSEMBLE_PDF])
            return bool(rows) and all(row.status == OutboxStatus.DONE for row in rows)

        await bounded(rows_done, workers, "PDF outbox rows not all DONE")


async def bounded(check: object, workers: Workers, what: str) -> None:
    try:
        # Polled: the renders run in `vouchsafe worker` processes the test kills and restarts.
        await wait_for(check, within=WAIT, interval=0.05)
    except AssertionError as exc:
        raise AssertionError(f"{what} within {WAIT:.0f} s: {exc}\n{workers.logs()}") from None
