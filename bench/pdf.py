"""The vouchers PDF: the chunked service against one bare xhtml2pdf call, and two ways to join the chunks.

Run by hand:

    uv run python -m bench.pdf [--vouchers 100,1000] [--large] [--repeat 1]

`--large` adds an order of 10,000 vouchers. With DATABASE_URL unset the bench
uses a SQLite file in a temporary directory; with it set, that (loopback)
database, migrated first. Per size, one order is placed through `place_order`,
then, interleaved and each in a fresh process so that memory figures are its own:
  A  the service: a render_pdf outbox row and every row it leads to, run in order
     (chunks of 100 rendered, stored, joined, the file stored in parts);
  B  the baseline: the same template with every voucher in one xhtml2pdf call
     (the same rows read and decrypted first, nothing stored);
  J  the join alone, of the same stored chunks into a temporary file: the
     service's PdfJoiner (one chunk in memory at a time) against pypdf's
     PdfWriter.append (every page held until written).
Each variant: pages/s of the median of `--repeat` timed runs, the RSS high-water
mark of the first (VmHWM, reset before the work; the process's RSS then is shown too), and the
tracemalloc peak of one more run (traced apart: tracing slows allocation).
Last, the per-page time ratio A/B (target <= 1.3).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import multiprocessing
import os
import resource
import secrets
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pypdf import PdfReader, PdfWriter
from tortoise.transactions import in_transaction
from xhtml2pdf.config.resources import ResourceAccessPolicy

from bench.postgres import LOOPBACK
from infra import database, pdf_join
from models import ORM_APPS, OutboxMessage, OutboxStatus, PdfChunk, PdfPart, PdfStatus, Role, VoucherOrder
from services import accounts, outbox, pdf, pdf_store, staff
from services.actors import Actor
from services.catalogue import LineRequest
from services.codes import CodeCipher
from services.orders import OrderRequest, place_order
from services.payments import SandboxGateway

PUBLIC_URL = "https://vouchsafe.example"
TASKS = (pdf.RENDER_PDF, pdf.RENDER_PDF_CHUNK, pdf.ASSEMBLE_PDF)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.pdf", description=__doc__.split("\n\n")[0])
    p.add_argument("--vouchers", default="100,1000", help="order sizes, comma-separated (default 100,1000)")
    p.add_argument("--large", action="store_true", help="add an order of 10,000 vouchers")
    p.add_argument("--repeat", type=int, default=1, help="timed runs per variant (default 1)")
    args = p.parse_args(argv)
    sizes = [int(n) for n in args.vouchers.split(",") if n.strip()]
    if args.large:
        sizes.append(10_000)
    if not sizes or not all(1 <= n <= 10_000 for n in sizes) or not 1 <= args.repeat <= 10:
        p.error("sizes from 1 to 10000, --repeat from 1 to 10")
    args.sizes = sizes
    return args


# -- in the child processes ------------------------------------------------------------------------------------


def _reset_rss_peak() -> float:
    """The process's RSS now, in MiB, with its high-water mark reset to it (Linux), so the peak is the work's."""
    with contextlib.suppress(OSError):  # else the high-water mark includes start-up: still an upper bound
        Path("/proc/self/clear_refs").write_text("5")
    return _proc_status("VmRSS")


def _rss_peak() -> float:
    try:
        return _proc_status("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _proc_status(field: str) -> float:
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith(field + ":"):
            return int(row.split()[1]) / 1024
    raise OSError(field)


async def _same(pages: Any) -> int:
    return int(pages)


def _measure(
    database_url: str,
    trace: bool,
    work: Callable[[], Awaitable[Any]],
    pages: Callable[[Any], Awaitable[int]] = _same,
) -> dict[str, float]:
    """Run `work` on an open database: its time, RSS and traced peak; then count the pages it made."""

    async def run() -> dict[str, float]:
        await database.open_db(database_url, pool_size=4, apps=ORM_APPS)
        try:
            rss_before = _reset_rss_peak()
            if trace:
                tracemalloc.start()
            started = time.perf_counter()
            result = await work()
            seconds = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else 0.0
            tracemalloc.stop()
            rss_after = _rss_peak()
            made = await pages(result)  # checked after the measures: reading the whole file back costs memory
            return {"seconds": seconds, "pages": made, "rss_before": rss_before, "rss": rss_after, "traced": peak}
        finally:
            await database.close_db()

    return asyncio.run(run())


async def _pending(order_id: int, tasks: tuple[str, ...]) -> list[int]:
    rows = (
        await OutboxMessage.filter(task__in=tasks, status=OutboxStatus.PENDING).order_by("id").values("id", "payload")
    )
    return [row["id"] for row in rows if row["payload"].get("order_id") == order_id]


async def _restart(order_id: int) -> None:
    """A fresh render of the order: what an operator's regeneration would do."""
    await VoucherOrder.filter(id=order_id).update(pdf_status=PdfStatus.FAILED)
    await PdfPart.filter(order_id=order_id).delete()
    await OutboxMessage.filter(task__in=TASKS, status=OutboxStatus.PENDING).update(status=OutboxStatus.DONE)
    async with in_transaction() as conn:
        await outbox.add(pdf.RENDER_PDF, {"order_id": order_id}, using_db=conn)


async def _drain(order_id: int, key: bytes, tasks: tuple[str, ...] = TASKS) -> None:
    handlers = pdf.pdf_handlers(cipher=CodeCipher(key), public_url=PUBLIC_URL)
    while ids := await _pending(order_id, tasks):
        for message_id in ids:
            outcome = await outbox.run(message_id, handlers)
            if outcome is not outbox.Outcome.DONE:
                raise RuntimeError(f"outbox row {message_id}: {outcome}")


def service_run(database_url: str, order_id: int, key: bytes, trace: bool) -> dict[str, float]:
    async def work() -> None:
        await _restart(order_id)
        await _drain(order_id, key)

    async def pages(_: None) -> int:
        data = b"".join([part async for part in pdf_store.pdf_bytes_stream(order_id)])
        return len(PdfReader(io.BytesIO(data)).pages)

    return _measure(database_url, trace, work, pages)


def baseline_run(database_url: str, order_id: int, key: bytes, trace: bool) -> dict[str, float]:
    async def work() -> bytes:
        cipher = CodeCipher(key)
        order: pdf.PdfOrder | None = None
        vouchers: list[pdf.PdfVoucher] = []
        for chunk in range(10_000 // 100):  # the service's own reads, all of them
            read = await pdf._chunk_input(order_id, chunk, cipher)
            assert read is not None
            order = read[0]
            if not read[1]:
                break
            vouchers.extend(read[1])
        assert order is not None
        unbounded = ResourceAccessPolicy.server(
            pdf.TEMPLATE_DIR,
            extra_roots=tuple({p.parent for p in pdf.FONTS.values()}),
            allow_remote=False,
            max_document_bytes=None,
            max_render_seconds=None,
        )
        return await asyncio.to_thread(pdf.render_vouchers, order, vouchers, public_url=PUBLIC_URL, policy=unbounded)

    async def pages(data: bytes) -> int:
        return len(PdfReader(io.BytesIO(data)).pages)

    return _measure(database_url, trace, work, pages)


def prepare_chunks(database_url: str, order_id: int, key: bytes) -> None:
    async def work() -> int:
        await _restart(order_id)
        await _drain(order_id, key, (pdf.RENDER_PDF, pdf.RENDER_PDF_CHUNK))
        return 0

    _measure(database_url, False, work)


def join_run(database_url: str, order_id: int, how: str, trace: bool) -> dict[str, float]:
    async def work() -> int:
        ids = [row["id"] for row in await PdfChunk.filter(order_id=order_id).order_by("chunk").values("id")]
        with tempfile.TemporaryFile() as out:
            if how == "stream":
                joiner = pdf_join.PdfJoiner(out)
                for chunk_id in ids:
                    joiner.add(bytes((await PdfChunk.filter(id=chunk_id).values("data"))[0]["data"]))
                joiner.finish()
                return joiner.pages
            writer = PdfWriter()
            for chunk_id in ids:
                writer.append(io.BytesIO(bytes((await PdfChunk.filter(id=chunk_id).values("data"))[0]["data"])))
            writer.write(out)
            return len(writer.pages)

    return _measure(database_url, trace, work)


# -- the parent ------------------------------------------------------------------------------------------------


def fresh(function: Callable[..., Any], *args: Any) -> Any:
    """Run in a process of its own, so that its memory figures are its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


async def seed(database_url: str, vouchers: int, key: bytes) -> int:
    await database.migrate(database_url, apps=ORM_APPS)
    await database.open_db(database_url, pool_size=4, apps=ORM_APPS)
    try:
        user = await accounts.sign_up(
            email=f"bench-{secrets.token_hex(6)}@example.com",
            password="correct horse battery",
            account_name="Bench GmbH",
            locale="de",
            public_url=PUBLIC_URL,
        )
        assert user.account_id is not None
        await staff.set_partner(account_id=user.account_id, enabled=True)
        order = await place_order(
            actor=Actor(user_id=user.id, account_id=user.account_id, role=Role.ADMIN),
            request=OrderRequest(
                lines=[LineRequest("BASIC_OV", vouchers, validity_years=2, fqdns=3, wildcards=1)],
                customer_name="Jürgen Größe € 山田太郎 محمد",
                card_token="tok_visa",
            ),
            gateway=SandboxGateway(),
            cipher=CodeCipher(key),
            public_url=PUBLIC_URL,
        )
        return order.id
    finally:
        await database.close_db()


def line(name: str, runs: list[dict[str, float]], traced: dict[str, float]) -> tuple[str, float]:
    seconds = statistics.median(r["seconds"] for r in runs)
    first = runs[0]
    print(
        f"  {name:<26} {first['pages']:>6.0f} pages  {seconds:8.2f} s  {first['pages'] / seconds:7.1f} pages/s"
        f"  RSS {first['rss_before']:6.0f} -> {first['rss']:6.0f} MiB  traced peak {traced['traced']:7.1f} MiB"
    )
    return name, seconds / first["pages"]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    key = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory() as tmp:
        url = os.environ.get("DATABASE_URL") or f"sqlite://{Path(tmp) / 'bench.sqlite3'}"
        if not url.startswith("sqlite") and urlsplit(url).hostname not in LOOPBACK:
            raise SystemExit("DATABASE_URL must be a loopback database")
        print(f"database: {'sqlite (temporary)' if url.startswith('sqlite') else url}")
        for size in args.sizes:
            order_id = asyncio.run(seed(url, size, key))
            print(f"order of {size} vouchers (chunks of {pdf.CHUNK}):")
            service, baseline = [], []
            for _ in range(args.repeat):
                service.append(fresh(service_run, url, order_id, key, False))
                baseline.append(fresh(baseline_run, url, order_id, key, False))
            per_page = dict(
                [
                    line("A service (chunked)", service, fresh(service_run, url, order_id, key, True)),
                    line("B one xhtml2pdf call", baseline, fresh(baseline_run, url, order_id, key, True)),
                ]
            )
            fresh(prepare_chunks, url, order_id, key)
            streamed = [fresh(join_run, url, order_id, "stream", False) for _ in range(args.repeat)]
            appended = [fresh(join_run, url, order_id, "pypdf", False) for _ in range(args.repeat)]
            line("J PdfJoiner (streamed)", streamed, fresh(join_run, url, order_id, "stream", True))
            line("J pypdf PdfWriter.append", appended, fresh(join_run, url, order_id, "pypdf", True))
            ratio = per_page["A service (chunked)"] / per_page["B one xhtml2pdf call"]
            print(f"  per-page time A/B: {ratio:.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()
