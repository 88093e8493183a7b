"""The codes CSV: decrypted codes, line details, statuses as of now, neutralised formulas, batches."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from models import OrderEvent, OrderEventKind, Voucher, VoucherOrder, VoucherOrderLine, VoucherStatus
from services.catalogue import LineRequest
from services.codes import CodeCipher
from services.downloads import Grant
from services.events import KeptEvents
from services.exports import HEADER, cell, csv_chunks, record_download
from services.reveal import reveal_codes
from settings import Settings
from tests.support.factories import partner_admin
from tests.support.orders import placed
from tests.support.running import shifted

BASIC_OV = LineRequest(product_code="BASIC_OV", quantity=3, validity_years=2, fqdns=3, wildcards=1)
BASIC_EV = LineRequest(product_code="BASIC_EV", quantity=2, validity_years=1, fqdns=1, wildcards=0)


async def csv_body(settings: Settings, order: VoucherOrder, **kwargs: int) -> str:
    chunks = csv_chunks(order=order, cipher=CodeCipher(settings.code_key), public_url=settings.public_url, **kwargs)
    return "".join([chunk async for chunk in chunks])


def parse(body: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body, newline="")))


class TestCell:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("=1+1", "'=1+1"),
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("@SUM", "'@SUM"),
            ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
            ("\t", "'\t"),
            ("\r", "'\r"),
            ("\tcmd", "'\tcmd"),
            ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
            ("Basic OV", "Basic OV"),
            ("VS-ABCDE-FGHJK-MNPQR-STVWX", "VS-ABCDE-FGHJK-MNPQR-STVWX"),
            ("a=1", "a=1"),
            ("", ""),
            (3, "3"),
        ],
    )
    def test_a_formula_gets_a_leading_apostrophe(self, value: object, expected: str) -> None:
        assert cell(value) == expected


class TestCsvChunks:
    async def test_rows_are_the_revealed_codes_with_their_line(self, db: None, settings: Settings) -> None:
        # given
        actor = await partner_admin()
        order = await placed(settings, actor, BASIC_OV, BASIC_EV)
        # when
        body = await csv_body(settings, order)
        # then
        assert body.startswith(",".join(HEADER) + "\r\n")
        rows = parse(body)
        revealed = await reveal_codes(
            actor=actor, order_id=order.id, cipher=CodeCipher(settings.code_key), bus=KeptEvents()
        )
        assert [row["code"] for row in rows] == [r.code for r in revealed]
        assert len({row["code"] for row in rows}) == 5
        products = {line.id: line.product_name for line in await VoucherOrderLine.filter(order_id=order.id)}
        for row, r in zip(rows, revealed, strict=True):
            assert row["redemption_url"] == f"{settings.public_url}/redeem/{r.code}"
            assert row["product"] == products[r.voucher.line_id]
            assert row["status"] == "VALID_UNUSED"
            assert datetime.fromisoformat(row["expires_at"]) == r.voucher.expires_at.replace(microsecond=0)
            assert row["expires_at"].endswith("Z")
        details = [(row["product"], row["validity_years"], row["fqdns"], row["wildcards"]) for row in rows]
        assert details == [("Basic OV", "2", "3", "1")] * 3 + [("Basic EV", "1", "1", "0")] * 2

    async def test_only_this_orders_codes(self, db: None, settings: Settings) -> None:
        actor = await partner_admin()
        order = await placed(settings, actor, BASIC_EV)
        other = await placed(settings, actor, BASIC_OV)
        codes = {row["code"] for row in parse(await csv_body(settings, order))}
        other_codes = {row["code"] for row in parse(await csv_body(settings, other))}
        assert len(codes) == 2
        assert len(other_codes) == 3
        assert not codes & other_codes

    async def test_statuses_read_as_of_now(self, db: None, settings: Settings) -> None:
        # given: one voucher used, one cancelled, one untouched, and a year and a day gone by
        actor = await partner_admin()
        order = await placed(settings, actor, BASIC_OV)
        used, cancelled, untouched = await Voucher.filter(order_id=order.id).order_by("id").values_list("id", flat=True)
        await Voucher.filter(id=used).update(status=VoucherStatus.VALID_USED)
        await Voucher.filter(id=cancelled).update(status=VoucherStatus.CANCELLED)
        assert [row["status"] for row in parse(await csv_body(settings, order))] == [
            "VALID_USED",
            "CANCELLED",
            "VALID_UNUSED",
        ]
        # when
        with shifted(timedelta(days=367)):
            rows = parse(await csv_body(settings, order))
        # then: the unused one reads EXPIRED though the expiry job has not run
        assert [row["status"] for row in rows] == ["VALID_USED", "CANCELLED", "EXPIRED"]
        assert (await Voucher.get(id=untouched)).status == VoucherStatus.VALID_UNUSED

    async def test_a_product_name_that_is_a_formula_is_neutralised(self, db: None, settings: Settings) -> None:
        # The line keeps the name it was sold under; a staff edit could have made it a formula.
        actor = await partner_admin()
        order = await placed(settings, actor, BASIC_EV)
        await VoucherOrderLine.filter(order_id=order.id).update(product_name='=HYPERLINK("http://evil.example")')
        rows = parse(await csv_body(settings, order))
        assert [row["product"] for row in rows] == ['\'=HYPERLINK("http://evil.example")'] * 2

    async def test_a_large_order_streams_in_batches(self, db: None, settings: Settings) -> None:
        # given
        actor = await partner_admin()
        order = await placed(settings, actor, LineRequest("BASIC_OV", 2_500, 1, 1, 0))
        # when
        chunks = [
            chunk
            async for chunk in csv_chunks(
                order=order, cipher=CodeCipher(settings.code_key), public_url=settings.public_url, batch_size=300
            )
        ]
        # then: a header chunk, then at most 300 rows a chunk
        body = "".join(chunks)
        assert len(body.splitlines()) == 2_501
        assert len(chunks) == 1 + 9
        assert max(chunk.count("\r\n") for chunk in chunks[1:]) == 300
        codes = [row["code"] for row in parse(body)]
        assert len(set(codes)) == 2_500

    async def test_an_exact_multiple_of_the_batch_size(self, db: None, settings: Settings) -> None:
        actor = await partner_admin()
        order = await placed(settings, actor, LineRequest("BASIC_OV", 4, 1, 1, 0))
        body = await csv_body(settings, order, batch_size=2)
        assert len(parse(body)) == 4

    async def test_batch_size_must_be_positive(self, db: None, settings: Settings) -> None:
        actor = await partner_admin()
        order = await placed(settings, actor)
        with pytest.raises(ValueError, match="batch_size must be positive"):
            await csv_body(settings, order, batch_size=0)


class TestRecordDownload:
    async def test_the_history_records_who_downloaded_which_file(self, db: None, settings: Settings) -> None:
        actor = await partner_admin()
        order = await placed(settings, actor)
        grant = Grant(
            order_id=order.id,
            kind="csv",
            user_id=actor.user_id,
            api_key_id=None,
            expires_at=datetime.now(UTC) + timedelta(minutes=5),
        )
        await record_download(order_id=order.id, grant=grant, kind="csv", bus=KeptEvents())
        await record_download(order_id=order.id, grant=grant, kind="pdf", bus=KeptEvents())
        events = await OrderEvent.filter(
            order_id=order.id, kind__in=[OrderEventKind.CSV_DOWNLOADED, OrderEventKind.PDF_DOWNLOADED]
        ).order_by("id")
        assert [(e.kind, e.actor_user_id, e.actor_api_key_id, e.data) for e in events] == [
            (OrderEventKind.CSV_DOWNLOADED, actor.user_id, None, {"file": "csv"}),
            (OrderEventKind.PDF_DOWNLOADED, actor.user_id, None, {"file": "pdf"}),
        ]
        assert all(e.created_at is not None for e in events)
