"""Orders placed through the services (as a partner places them) and their PDF rows run to the end."""

from __future__ import annotations

import asyncio
import io
from typing import Any

from pypdf import PdfReader
from tortoise.transactions import in_transaction

from models import OrderEvent, OrderEventKind, OutboxMessage, OutboxStatus, Role, VoucherOrder
from services import accounts, outbox, pdf, pdf_store, staff
from services.actors import Actor
from services.catalogue import LineRequest
from services.codes import CodeCipher
from services.events import KeptEvents
from services.orders import OrderRequest, place_order
from services.payments import SandboxGateway
from services.reveal import RevealedCode, reveal_codes
from settings import Settings
from tests.support.factories import PASSWORD, unique_email

OV = LineRequest(product_code="BASIC_OV", quantity=3, validity_years=2, fqdns=3, wildcards=1)
EV = LineRequest(product_code="BASIC_EV", quantity=2, validity_years=1, fqdns=1, wildcards=0)
PDF_TASKS = (pdf.RENDER_PDF, pdf.RENDER_PDF_CHUNK, pdf.ASSEMBLE_PDF)


async def partner(settings: Settings, locale: str = "en") -> Actor:
    user = await accounts.sign_up(
        email=unique_email("pdf"), password=PASSWORD, account_name="Reseller", locale=locale, public_url=""
    )
    assert user.account_id is not None
    await staff.set_partner(account_id=user.account_id, enabled=True, bus=KeptEvents())
    return Actor(user_id=user.id, account_id=user.account_id, role=Role.ADMIN)


async def placed(settings: Settings, actor: Actor, *lines: LineRequest, **request: Any) -> VoucherOrder:
    return await place_order(
        actor=actor,
        request=OrderRequest(lines=list(lines) or [OV], card_token="tok_visa", **request),
        gateway=SandboxGateway(),
        cipher=CodeCipher(settings.code_key),
        public_url=settings.public_url,
        bus=KeptEvents(),
    )


def handlers(settings: Settings, cipher: CodeCipher | None = None) -> dict[str, outbox.Handler]:
    return pdf.pdf_handlers(
        cipher=cipher or CodeCipher(settings.code_key), public_url=settings.public_url, bus=KeptEvents()
    )


async def request_render(order: VoucherOrder) -> int:
    """Another render_pdf outbox row (placing the order wrote the first), as a regeneration would."""
    async with in_transaction() as conn:
        message = await outbox.add(pdf.RENDER_PDF, {"order_id": order.id}, using_db=conn)
    return message.id


async def placed_render_row(order: VoucherOrder) -> int:
    """The render_pdf row that placing the order wrote, in its transaction."""
    [row] = await pending_rows(order, pdf.RENDER_PDF)
    return int(row["id"])


async def pending_rows(order: VoucherOrder, *tasks: str) -> list[dict[str, Any]]:
    rows = await (
        OutboxMessage.filter(task__in=tasks or PDF_TASKS, status__in=[OutboxStatus.PENDING, OutboxStatus.ENQUEUED])
        .order_by("id")
        .values("id", "task", "payload")
    )
    return [row for row in rows if row["payload"].get("order_id") == order.id]


async def drain(order: VoucherOrder, handlers: dict[str, outbox.Handler], *, within: float = 120) -> None:
    """Run this order's PDF rows (and the rows they write) until none is left; failures retry until final."""
    hooks = pdf.pdf_failure_hooks(bus=KeptEvents())
    deadline = asyncio.get_running_loop().time() + within
    while rows := await pending_rows(order):
        for row in rows:
            outcome = await outbox.run(row["id"], handlers, failure_hooks=hooks)
            # Polled: BUSY means another worker (the app's) holds the row; only its end frees it.
            if outcome is outbox.Outcome.BUSY:  # a worker holds it: let it finish
                await asyncio.sleep(0.05)
        assert asyncio.get_running_loop().time() < deadline, "the PDF rows did not drain"


async def render(settings: Settings, order: VoucherOrder) -> bytes:
    await drain(order, handlers(settings))
    return await stored_pdf(order, settings)


async def stored_pdf(order: VoucherOrder, settings: Settings) -> bytes:
    """The order's stored PDF, opened part by part as a download opens it."""
    cipher = CodeCipher(settings.code_key)
    return b"".join([part async for part in pdf_store.pdf_bytes_stream(order.id, cipher)])


def pages_text(data: bytes) -> list[str]:
    return [" ".join((page.extract_text() or "").split()) for page in PdfReader(io.BytesIO(data)).pages]


async def events(order: VoucherOrder, kind: OrderEventKind) -> list[OrderEvent]:
    return await OrderEvent.filter(order_id=order.id, kind=kind).order_by("id")


async def codes(settings: Settings, actor: Actor, order: VoucherOrder) -> list[RevealedCode]:
    return await reveal_codes(actor=actor, order_id=order.id, cipher=CodeCipher(settings.code_key), bus=KeptEvents())
