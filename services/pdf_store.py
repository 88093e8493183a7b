"""Reading a stored voucher PDF, without loading the PDF toolkit (the API process serves these)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from models import PdfPart
from services import pdf_seal
from services.codes import CodeCipher


async def pdf_bytes_stream(order_id: int, cipher: CodeCipher) -> AsyncIterator[bytes]:
    """The stored PDF, part by part, each opened as it is read (at most one 1 MiB part in memory)."""
    parts = await PdfPart.filter(order_id=order_id).order_by("part").values("id", "part")
    for part in parts:
        data = await PdfPart.filter(id=part["id"]).values("data")
        if data:
            yield pdf_seal.open_part(cipher, order_id, part["part"], bytes(data[0]["data"]))
