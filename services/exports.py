"""The CSV of an order's codes, streamed in batches: memory stays flat however large the order.

Vouchers are read by keyset (id after the last one, by id, a batch at a time) as
plain rows, each batch decrypted and written to a string of its own. Every cell
a spreadsheet would run as a formula is neutralised with a leading apostrophe.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import Any

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient

from infra import clock
from models import OrderEvent, OrderEventKind, Voucher, VoucherOrder, VoucherOrderLine
from services import events
from services.codes import CodeCipher, display
from services.downloads import Grant
from services.events import EventBus
from services.order_reads import effective_status

HEADER = (
    "code",
    "redemption_url",
    "product",
    "validity_years",
    "fqdns",
    "wildcards",
    "status",
    "expires_at",
)
BATCH_SIZE = 1_000
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_EXPIRES_AT = Voucher._meta.fields_map["expires_at"]
_DOWNLOADED = {"csv": OrderEventKind.CSV_DOWNLOADED, "pdf": OrderEventKind.PDF_DOWNLOADED}


def cell(value: object) -> str:
    """A cell as text that no spreadsheet evaluates: a leading apostrophe before = + - @ tab or CR."""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _row(cells: Iterable[object]) -> list[str]:
    return [cell(value) for value in cells]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _batch_query(conn: BaseDBAsyncClient) -> str:
    p1, p2, p3 = ("$1", "$2", "$3") if conn.capabilities.dialect == "postgres" else ("?", "?", "?")
    return (
        "SELECT id, line_id, code_ciphertext, code_digest, status, expires_at FROM voucher"
        f" WHERE order_id = {p1} AND id > {p2} ORDER BY id LIMIT {p3}"
    )


async def csv_chunks(
    *, order: VoucherOrder, cipher: CodeCipher, public_url: str, batch_size: int = BATCH_SIZE
) -> AsyncIterator[str]:
    """The header, then one chunk of CSV per batch of the order's vouchers, by id; statuses as of now."""
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    now = clock.now()
    redeem = f"{public_url.rstrip('/')}/redeem/"
    # The line's cells, already neutralised: an order has at most a few lines.
    lines: dict[int, list[str]] = {
        int(line["id"]): _row((line["product_name"], line["validity_years"], line["fqdns"], line["wildcards"]))
        for line in await VoucherOrderLine.filter(order_id=order.id).values(
            "id", "product_name", "validity_years", "fqdns", "wildcards"
        )
    }
    head = io.StringIO()
    csv.writer(head).writerow(HEADER)
    yield head.getvalue()
    conn = connections.get("default")
    query = _batch_query(conn)
    last_id = 0
    while True:
        # Raw rows, not model instances nor .values(): converting every enum and date costs more than the rest.
        _, rows = await conn.execute_query(query, [order.id, last_id, batch_size])
        if not rows:
            return
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        # An order's vouchers share one expiry instant (or a few) and four statuses: convert each pair once.
        tails: dict[tuple[str, Any], tuple[str, str]] = {}
        for _, line_id, ciphertext, digest, status, raw_expiry in rows:
            tail = tails.get((status, raw_expiry))
            if tail is None:
                expires_at = _EXPIRES_AT.to_python_value(raw_expiry)
                tail = tails[status, raw_expiry] = (effective_status(status, expires_at, now).value, _iso(expires_at))
            code = display(cipher.open(ciphertext, digest))
            writer.writerow([cell(code), cell(redeem + code), *lines[line_id], *tail])
        yield buffer.getvalue()
        if len(rows) < batch_size:
            return
        last_id = int(rows[-1][0])


async def record_download(*, order_id: int, grant: Grant, kind: str, bus: EventBus) -> None:
    """The order's history records each download of its codes: which file, who, when."""
    await OrderEvent.create(
        order_id=order_id,
        kind=_DOWNLOADED[kind],
        actor_user_id=grant.user_id,
        actor_api_key_id=grant.api_key_id,
        data={"file": kind},
    )
    await events.publish_order(bus, order_id, f"{kind.upper()}_DOWNLOADED")
