"""The vouchers PDF of an order: one page per voucher, rendered in chunks by outbox tasks, kept in the database.

"render_pdf" starts a generation and writes one "render_pdf_chunk" row per 100
vouchers; each chunk is rendered outside any transaction and stored once; the
chunk that completes the set writes "assemble_pdf", which joins the chunks a
chunk at a time into a temporary file and stores it in parts with READY, a
PDF_READY event and the chunks' removal in one transaction. Every step may run
twice, or at once with itself: a row lock and a compare-and-set decide.

The order's notes are the partner's own (e.g. an invoice number): never printed for the customer.
The rendering itself (template, fonts, xhtml2pdf's sandbox) is services.pdf_render.
"""

from __future__ import annotations

import asyncio
import gc
import io
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from typing import IO, Any

from pypdf import PdfReader
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from infra import clock
from infra.pdf_join import PdfJoiner
from models import (
    Account,
    OrderEvent,
    OrderEventKind,
    PdfChunk,
    PdfPart,
    PdfRender,
    PdfStatus,
    Voucher,
    VoucherOrder,
    VoucherOrderLine,
    WebhookEventType,
)
from services import events, outbox, pdf_seal, webhook_events
from services.codes import CodeCipher, display
from services.events import EventBus
from services.outbox import FailureHook, Handler
from services.pdf_render import PdfLine, PdfOrder, PdfVoucher, render_vouchers

RENDER_PDF = "render_pdf"
RENDER_PDF_CHUNK = "render_pdf_chunk"
ASSEMBLE_PDF = "assemble_pdf"
CHUNK = 100
PART_BYTES = 1 << 20


class _Stale(Exception):
    """Another delivery or a newer generation got there first: roll back and stop."""


async def _lock_order(conn: BaseDBAsyncClient, order_id: int) -> bool:
    # A write changing nothing: PostgreSQL locks the row until commit. SQLite's transaction
    # already holds the write lock from its BEGIN IMMEDIATE (infra.sqlite_backend).
    return bool(await VoucherOrder.filter(id=order_id).using_db(conn).update(pdf_status=F("pdf_status")))


async def start_render(order_id: int, message_id: int | None, *, bus: EventBus) -> int:
    """Start a generation of an order's PDF unless it is READY; return its chunk count (0: none started)."""
    async with in_transaction() as conn:
        if not await _lock_order(conn, order_id):
            return 0
        status = (await VoucherOrder.filter(id=order_id).using_db(conn).values("pdf_status"))[0]["pdf_status"]
        render = await PdfRender.filter(order_id=order_id).using_db(conn).first()
        if status == PdfStatus.READY:
            return 0
        if status == PdfStatus.PENDING and render and message_id and render.started_by_message_id == message_id:
            return 0  # a second delivery of the row that started this generation; FAILED always restarts
        vouchers = await Voucher.filter(order_id=order_id).using_db(conn).count()
        chunks = -(-vouchers // CHUNK)
        generation = render.generation + 1 if render else 1
        fields = {"generation": generation, "chunk_count": chunks, "started_by_message_id": message_id}
        if render:
            await PdfRender.filter(order_id=order_id).using_db(conn).update(updated_at=clock.now(), **fields)
        else:
            await PdfRender.create(order_id=order_id, updated_at=clock.now(), using_db=conn, **fields)
        await (
            VoucherOrder.filter(id=order_id)
            .using_db(conn)
            .update(pdf_status=PdfStatus.PENDING, pdf_error=None, pdf_generated_at=None)
        )
        await PdfChunk.filter(order_id=order_id).using_db(conn).delete()
        await PdfPart.filter(order_id=order_id).using_db(conn).delete()
        for chunk in range(chunks):
            payload = {"order_id": order_id, "generation": generation, "chunk": chunk}
            await outbox.add(RENDER_PDF_CHUNK, payload, using_db=conn)
    outbox.notify()
    await events.publish_order(bus, order_id, "PDF_PENDING")
    return chunks


async def _chunk_input(order_id: int, chunk: int, cipher: CodeCipher) -> tuple[PdfOrder, list[PdfVoucher]] | None:
    """The order and the chunk's vouchers (by id) with their codes opened: plain rows, never model instances."""
    orders = await VoucherOrder.filter(id=order_id).values("number", "customer_name", "voucher_count", "account_id")
    if not orders:
        return None
    row = orders[0]
    locales = await Account.filter(id=row.pop("account_id")).values_list("locale", flat=True)
    order = PdfOrder(**row, locale=str(locales[0]) if locales else "en")
    lines = {
        int(line.pop("id")): PdfLine(**line)
        for line in await VoucherOrderLine.filter(order_id=order_id).values(
            "id", "product_name", "validity_years", "fqdns", "wildcards"
        )
    }
    rows = (
        await Voucher.filter(order_id=order_id)
        .order_by("id")
        .offset(chunk * CHUNK)
        .limit(CHUNK)
        .values("line_id", "code_ciphertext", "code_digest", "expires_at")
    )
    vouchers = [
        PdfVoucher(
            position=chunk * CHUNK + i + 1,
            code=display(cipher.open(v["code_ciphertext"], v["code_digest"])),
            expires_at=v["expires_at"],
            line=lines[v["line_id"]],
        )
        for i, v in enumerate(rows)
    ]
    return order, vouchers


async def render_chunk(*, order_id: int, generation: int, chunk: int, cipher: CodeCipher, public_url: str) -> None:
    """Render one chunk outside any transaction and store it once; the last one stored asks for assembly."""
    render = await PdfRender.filter(order_id=order_id).first()
    if render is None or render.generation != generation:
        return  # gone, or a restart made this chunk's generation stale
    if await PdfChunk.filter(order_id=order_id, chunk=chunk, generation=generation).exists():
        return  # a second delivery: the first stored the chunk (and the assembly row) in one transaction
    inputs = await _chunk_input(order_id, chunk, cipher)
    if inputs is None:
        return
    order, vouchers = inputs
    if not vouchers:  # the set could never complete: fail visibly rather than wait forever
        raise RuntimeError(f"chunk {chunk} of order {order_id} has no vouchers")
    data = await asyncio.to_thread(render_vouchers, order, vouchers, public_url=public_url)
    gc.collect()  # the layout's cycles (tens of MB a chunk) go now, not after several chunks
    pages = len(PdfReader(io.BytesIO(data)).pages)
    if pages != len(vouchers):  # never store a chunk whose markup made pages of its own
        raise RuntimeError(f"chunk {chunk} of order {order_id} has {pages} pages for {len(vouchers)} vouchers")
    async with in_transaction() as conn:
        # The render row's lock orders the chunks of one order: exactly the last one stored sees them all.
        locked = (
            await PdfRender.filter(order_id=order_id, generation=generation)
            .using_db(conn)
            .update(updated_at=clock.now())
        )
        if not locked or await PdfChunk.filter(order_id=order_id, chunk=chunk).using_db(conn).exists():
            return
        await PdfChunk.create(
            order_id=order_id,
            generation=generation,
            chunk=chunk,
            pages=pages,
            data=pdf_seal.seal_chunk(cipher, order_id, chunk, data),
            created_at=clock.now(),
            using_db=conn,
        )
        if await PdfChunk.filter(order_id=order_id).using_db(conn).count() == render.chunk_count:
            await outbox.add(ASSEMBLE_PDF, {"order_id": order_id, "generation": generation}, using_db=conn)
    outbox.notify()


async def assemble(*, order_id: int, generation: int, cipher: CodeCipher, bus: EventBus) -> None:
    """Join the chunks in order and store the PDF in parts; READY is set once, by compare-and-set."""
    order = await VoucherOrder.filter(id=order_id).values("pdf_status")
    render = await PdfRender.filter(order_id=order_id).first()
    if not order or order[0]["pdf_status"] == PdfStatus.READY or render is None or render.generation != generation:
        return
    chunk_rows = await PdfChunk.filter(order_id=order_id).order_by("chunk").values("id", "chunk")
    # The file lives in the database, not on a disk: every API instance can serve it and no
    # shared filesystem is needed. It is joined into a local temporary file, one chunk in memory at a time.
    with tempfile.TemporaryFile() as tmp:
        try:
            if len(chunk_rows) != render.chunk_count:
                raise _Stale
            joiner = PdfJoiner(tmp)
            for row in chunk_rows:
                data = await PdfChunk.filter(id=row["id"]).values("data")
                if not data:
                    raise _Stale
                chunk = pdf_seal.open_chunk(cipher, order_id, row["chunk"], bytes(data[0]["data"]))
                await asyncio.to_thread(joiner.add, chunk)
            joiner.finish()
            size = tmp.tell()
            tmp.seek(0)
            await _store(order_id, generation, tmp, pages=joiner.pages, size=size, cipher=cipher)
            await events.publish_order(bus, order_id, "PDF_READY")
        except _Stale:
            # Another delivery finished first (and removed the chunks), or a restart made this one stale.
            if await VoucherOrder.filter(id=order_id, pdf_status=PdfStatus.READY).exists():
                return
            if not await PdfRender.filter(order_id=order_id, generation=generation).exists():
                return
            raise RuntimeError(f"order {order_id}: PDF chunks missing for generation {generation}") from None


async def _store(order_id: int, generation: int, pdf: IO[bytes], *, pages: int, size: int, cipher: CodeCipher) -> None:
    async with in_transaction() as conn:
        won = await (
            VoucherOrder.filter(id=order_id, pdf_status__in=[PdfStatus.PENDING, PdfStatus.FAILED])
            .using_db(conn)
            .update(pdf_status=PdfStatus.READY, pdf_error=None, pdf_generated_at=clock.now())
        )
        if not won or not await PdfRender.filter(order_id=order_id, generation=generation).using_db(conn).exists():
            raise _Stale
        await PdfPart.filter(order_id=order_id).using_db(conn).delete()
        part = 0
        while piece := pdf.read(PART_BYTES):
            sealed = pdf_seal.seal_part(cipher, order_id, part, piece)
            await PdfPart.create(order_id=order_id, part=part, data=sealed, using_db=conn)
            part += 1
        await OrderEvent.create(
            order_id=order_id,
            kind=OrderEventKind.PDF_READY,
            data={"pages": pages, "bytes": size, "parts": part},
            using_db=conn,
        )
        pdf_ready = {"pdf": {"pages": pages}}
        await webhook_events.emit_for_order(conn, order_id, WebhookEventType.VOUCHER_ORDER_PDF_READY, pdf_ready)
        await PdfChunk.filter(order_id=order_id).using_db(conn).delete()


async def mark_failed(*, order_id: int, generation: int | None, reason: str, bus: EventBus) -> bool:
    """A render that gave up shows FAILED with its reason, once; a newer generation is left alone."""
    reason = reason[:500]
    try:
        async with in_transaction() as conn:
            changed = await (
                VoucherOrder.filter(id=order_id, pdf_status=PdfStatus.PENDING)
                .using_db(conn)
                .update(pdf_status=PdfStatus.FAILED, pdf_error=reason)
            )
            if not changed:
                return False
            stale = PdfRender.filter(order_id=order_id, generation=generation).using_db(conn)
            if generation is not None and not await stale.exists():
                raise _Stale
            await OrderEvent.create(
                order_id=order_id, kind=OrderEventKind.PDF_FAILED, data={"reason": reason}, using_db=conn
            )
    except _Stale:
        return False
    await events.publish_order(bus, order_id, "PDF_FAILED")
    return True


def pdf_handlers(*, cipher: CodeCipher, public_url: str, bus: EventBus) -> dict[str, Handler]:
    """Outbox task name -> handler, for the worker."""

    async def render_pdf(payload: dict[str, Any], message_id: int) -> None:
        await start_render(int(payload["order_id"]), message_id, bus=bus)

    async def render_pdf_chunk(payload: dict[str, Any], message_id: int) -> None:
        await render_chunk(
            order_id=int(payload["order_id"]),
            generation=int(payload["generation"]),
            chunk=int(payload["chunk"]),
            cipher=cipher,
            public_url=public_url,
        )

    async def assemble_pdf(payload: dict[str, Any], message_id: int) -> None:
        await assemble(order_id=int(payload["order_id"]), generation=int(payload["generation"]), cipher=cipher, bus=bus)

    return {RENDER_PDF: render_pdf, RENDER_PDF_CHUNK: render_pdf_chunk, ASSEMBLE_PDF: assemble_pdf}


def _hook(stage: Callable[[Mapping[str, Any]], str], bus: EventBus) -> FailureHook:
    async def hook(payload: dict[str, Any], error: str) -> None:
        generation = payload.get("generation")
        await mark_failed(
            order_id=int(payload["order_id"]),
            generation=None if generation is None else int(generation),
            reason=f"{stage(payload)}: {error}",
            bus=bus,
        )

    return hook


def pdf_failure_hooks(*, bus: EventBus) -> dict[str, Callable[[dict[str, Any], str], Awaitable[None]]]:
    """Outbox task name -> what its last failure does: the order's PDF shows FAILED and why."""
    return {
        RENDER_PDF: _hook(lambda p: "The PDF render could not start", bus),
        RENDER_PDF_CHUNK: _hook(lambda p: f"Rendering vouchers {p['chunk'] * CHUNK + 1}+ failed", bus),
        ASSEMBLE_PDF: _hook(lambda p: "Joining the PDF failed", bus),
    }
