"""An order of 10,000 vouchers renders in chunks whose memory does not grow with the order.

Rendering all 10,000 pages takes minutes (bench W5 does it, and prints the workers' peak
memory at 1,000 and at 10,000 vouchers). Here: the render of the largest order a line
allows is planned as 100 chunk jobs of 100 vouchers, and the last chunk (the one that
reads furthest into the order) renders its 100 pages with the memory of a chunk, not of
the order. The chunks left unrendered are made stale afterwards, as a restart makes them,
so that no later test's worker renders 9,900 pages.
"""

from __future__ import annotations

import io
import tracemalloc

from pypdf import PdfReader

from models import OutboxMessage, OutboxStatus, PdfChunk, PdfRender
from services import outbox, pdf, pdf_seal
from services.catalogue import MAX_QUANTITY, LineRequest
from services.codes import CodeCipher
from services.events import KeptEvents
from settings import Settings
from tests.support.orders import handlers, partner, pending_rows, placed

LARGEST = LineRequest(product_code="BASIC_OV", quantity=MAX_QUANTITY, validity_years=1, fqdns=1, wildcards=0)
# Rendering one chunk of 100 pages peaked at 43 MB of Python allocations (tracemalloc, this
# test). xhtml2pdf keeps a document's whole story in memory until it is built, so a render
# of all 10,000 pages in one call (bench W5's baseline) would hold about a hundred times that.
CHUNK_PEAK_MAX = 64 << 20


async def test_ten_thousand_vouchers_render_in_chunks_of_bounded_memory(db: None, settings: Settings) -> None:
    # given: an order of 10,000 vouchers, and its render started
    actor = await partner(settings)
    order = await placed(settings, actor, LARGEST)
    assert order.voucher_count == 10_000
    [start] = await pending_rows(order, pdf.RENDER_PDF)
    run = handlers(settings)
    assert (
        await outbox.run(start["id"], run, failure_hooks=pdf.pdf_failure_hooks(bus=KeptEvents())) is outbox.Outcome.DONE
    )
    try:
        # then: 100 chunk jobs of 100 vouchers each, independent of one another
        chunks = await pending_rows(order, pdf.RENDER_PDF_CHUNK)
        assert sorted(row["payload"]["chunk"] for row in chunks) == list(range(10_000 // pdf.CHUNK))
        assert pdf.CHUNK == 100
        last = max(chunks, key=lambda row: row["payload"]["chunk"])
        # when: the last chunk renders
        tracemalloc.start()
        try:
            outcome = await outbox.run(last["id"], run, failure_hooks=pdf.pdf_failure_hooks(bus=KeptEvents()))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # then: its 100 pages, vouchers 9,901 to 10,000, rendered with a chunk's memory
        assert outcome is outbox.Outcome.DONE
        stored = await PdfChunk.get(order_id=order.id, chunk=last["payload"]["chunk"])
        pages = PdfReader(
            io.BytesIO(pdf_seal.open_chunk(CodeCipher(settings.code_key), order.id, stored.chunk, stored.data))
        ).pages
        assert stored.pages == len(pages) == pdf.CHUNK
        assert "Voucher 10000 of 10000" in " ".join((pages[-1].extract_text() or "").split())
        assert peak < CHUNK_PEAK_MAX, f"{peak / 2**20:.1f} MB"
    finally:
        # the other 99 chunks stale (a newer generation), and out of every later test's way
        await PdfRender.filter(order_id=order.id).update(generation=-1)
        rows = [row["id"] for row in await pending_rows(order)]
        await OutboxMessage.filter(id__in=rows).update(status=OutboxStatus.DONE)
