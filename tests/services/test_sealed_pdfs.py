"""PDFs at rest: sealed bound to their order and position, and migration 0009 seals those stored in clear."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from tortoise import connections

from infra import database
from models import ORM_APPS, PdfChunk, PdfPart, VoucherOrder
from services import pdf, pdf_seal, pdf_store
from services.codes import CodeCipher
from settings import Settings
from tests.support import at_rest
from tests.support.orders import EV, codes, partner, placed, render, stored_pdf
from tests.support.stores import ON_POSTGRES, admin_database


class TestSealing:
    def test_a_blob_opens_only_at_its_own_order_and_position(self) -> None:
        cipher = CodeCipher(b"k" * 32)
        sealed = pdf_seal.seal_part(cipher, 7, 0, b"%PDF-1.4 VS-ABCDE")
        assert b"VS-ABCDE" not in sealed
        assert pdf_seal.open_part(cipher, 7, 0, sealed) == b"%PDF-1.4 VS-ABCDE"
        for order_id, part in ((8, 0), (7, 1)):
            with pytest.raises(InvalidTag):
                pdf_seal.open_part(cipher, order_id, part, sealed)
        with pytest.raises(InvalidTag):  # a part is not a chunk, nor opened under another key
            pdf_seal.open_chunk(cipher, 7, 0, sealed)
        with pytest.raises(InvalidTag):
            pdf_seal.open_part(CodeCipher(b"o" * 32), 7, 0, sealed)
        # a fresh nonce each time: the same PDF seals differently
        assert pdf_seal.seal_part(cipher, 7, 0, b"x") != pdf_seal.seal_part(cipher, 7, 0, b"x")


@pytest.fixture
async def own_database(settings: Settings, tmp_path: Path) -> AsyncIterator[Settings]:
    """A database of the test's own: the migration is undone and applied again in it."""
    if ON_POSTGRES:
        async with admin_database() as url:
            await database.migrate(url, apps=ORM_APPS)
            yield replace(settings, database_url=url)
        return
    url = f"sqlite://{tmp_path / 'own.sqlite3'}"
    await database.migrate(url, apps=ORM_APPS)
    yield replace(settings, database_url=url)


async def test_migration_0009_seals_what_was_stored_in_clear(
    own_database: Settings, monkeypatch: pytest.MonkeyPatch, small_parts: None
) -> None:
    settings = own_database
    cipher = CodeCipher(settings.code_key)
    await database.open_db(settings.database_url, apps=ORM_APPS)
    try:
        # given: a rendered PDF written back in clear, and a chunk in clear, as stored before 0009
        actor = await partner(settings)
        order = await placed(settings, actor, EV)
        clear = await render(settings, order)
        shown = [revealed.code for revealed in await codes(settings, actor, order)]
        assert at_rest.codes_found(shown, [clear]) == set(shown)
        parts = await PdfPart.filter(order_id=order.id).order_by("part")
        assert len(parts) > 1
        for part in parts:
            await PdfPart.filter(id=part.id).update(data=pdf_seal.open_part(cipher, order.id, part.part, part.data))
        chunk = await PdfChunk.create(
            order_id=order.id, generation=1, chunk=0, pages=2, data=clear, created_at=datetime.now(UTC)
        )
        await forget_0009()
    finally:
        await database.close_db()
    # when: `vouchsafe migrate` runs with the deployment's key
    monkeypatch.setenv("VOUCHSAFE_CODE_KEY", _b64(settings.code_key))
    monkeypatch.setenv("VOUCHSAFE_DATA_DIR", str(settings.data_dir))
    await database.migrate(settings.database_url, apps=ORM_APPS)
    # then: every row sealed at its position, and the PDF reads as before
    await database.open_db(settings.database_url, apps=ORM_APPS)
    try:
        if not ON_POSTGRES:  # and no page of the file holds a code any more (what the rows held was zeroed)
            path = Path(settings.database_url.split("://", 1)[1])
            with contextlib.closing(sqlite3.connect(path)) as raw:
                raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            assert at_rest.codes_found(shown, at_rest.sqlite_blobs(path)) == set()
        sealed = {p.id: bytes(p.data) for p in await PdfPart.filter(order_id=order.id)}
        for part in await PdfPart.filter(order_id=order.id):
            assert b"%PDF" not in part.data
            assert b"/URI" not in part.data
            pdf_seal.open_part(cipher, order.id, part.part, part.data)
        sealed_chunk = await PdfChunk.get(id=chunk.id)
        assert pdf_seal.open_chunk(cipher, order.id, 0, sealed_chunk.data) == clear
        assert await stored_pdf(order, settings) == clear
        await forget_0009()
    finally:
        await database.close_db()
    # and: run again, it leaves what it sealed as it is
    await database.migrate(settings.database_url, apps=ORM_APPS)
    await database.open_db(settings.database_url, apps=ORM_APPS)
    try:
        assert {p.id: bytes(p.data) for p in await PdfPart.filter(order_id=order.id)} == sealed
    finally:
        await database.close_db()


async def forget_0009() -> None:
    await connections.get("default").execute_script("DELETE FROM tortoise_migrations WHERE name = '0009_sealed_pdfs'")


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdf, "PART_BYTES", 30_000)


def _b64(key: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(key).decode()


async def test_a_download_opens_one_part_at_a_time(db: None, settings: Settings) -> None:
    # given: a stored PDF of 16 sealed parts of 1 MiB each (made up: only the streaming is measured)
    cipher = CodeCipher(settings.code_key)
    order = await placed(settings, await partner(settings), EV)
    await PdfPart.filter(order_id=order.id).delete()
    parts = [os.urandom(pdf.PART_BYTES) for _ in range(16)]
    for index, data in enumerate(parts):
        await PdfPart.create(order_id=order.id, part=index, data=pdf_seal.seal_part(cipher, order.id, index, data))
    del data
    # when: it is streamed as a download streams it
    tracemalloc.start()
    try:
        streamed = []
        async for piece in pdf_store.pdf_bytes_stream(order.id, cipher):
            streamed.append(hashlib.sha256(piece).digest())
            del piece
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # then: every part opened, in order, with a few parts' memory (measured: 2.0 MiB on SQLite, 3.5 on PostgreSQL)
    assert streamed == [hashlib.sha256(p).digest() for p in parts]
    assert peak < 4 * pdf.PART_BYTES, f"{peak / 2**20:.1f} MiB"
    assert await VoucherOrder.filter(id=order.id).exists()
