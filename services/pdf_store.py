"""Reading a stored voucher PDF, without loading the PDF toolkit (the API process serves these)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from models import PdfPart


async def pdf_bytes_stream(order_id: int) -> AsyncIterator[bytes]:
    """The stored PDF, part by part (at most 1 MiB in memory)."""
    parts = await PdfPart.filter(order_id=order_id).order_by("part").values("id")
    for part in parts:
        data = await PdfPart.filter(id=part["id"]).values("data")
        if data:
            yield bytes(data[0]["data"])
