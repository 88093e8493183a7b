"""Rendering an order's PDF again (its links use the public URL of now), on request of its owner or staff.

The request is one transaction: a compare-and-set takes the PDF from READY or FAILED
to PENDING (refused while a render is in progress and when the order is cancelled),
the history records who asked, and a render_pdf outbox row starts a new generation,
which replaces the stored PDF (services.pdf).
"""

from __future__ import annotations

from tortoise.transactions import in_transaction

from models import OrderEvent, OrderEventKind, PdfStatus, Role, VoucherOrder, VoucherOrderStatus
from services import events, outbox
from services.actors import Actor
from services.errors import DomainError, ErrorCode, not_found
from services.events import EventBus
from services.orders import RENDER_PDF  # not services.pdf: the API process never loads the PDF toolkit

IN_PROGRESS = "The PDF is being rendered; ask again once it is READY or FAILED."
CANCELLED = "The order is cancelled: its vouchers are void, so no PDF is rendered for it."


async def render_again(*, actor: Actor, order_id: int, bus: EventBus) -> VoucherOrder:
    """Start a new render of the order's PDF; the order as it is afterwards."""
    orders = VoucherOrder.filter(id=order_id)
    if not actor.is_staff:
        actor.require_role(Role.ADMIN, Role.FINANCE)
        orders = orders.filter(account_id=actor.require_account())
    order = await orders.first()
    if order is None:
        raise not_found("order_id", "No such order.")
    async with in_transaction() as conn:
        won = await (
            VoucherOrder.filter(id=order.id, pdf_status__in=[PdfStatus.READY, PdfStatus.FAILED])
            .exclude(status=VoucherOrderStatus.CANCELLED)
            .using_db(conn)
            .update(pdf_status=PdfStatus.PENDING, pdf_error=None)
        )
        if not won:
            now = await VoucherOrder.filter(id=order.id).using_db(conn).values("status", "pdf_status")
            if now and now[0]["status"] == VoucherOrderStatus.CANCELLED:
                raise DomainError(ErrorCode.ORDER_CANCELLED, CANCELLED, "order_id")
            raise DomainError(ErrorCode.PDF_RENDER_IN_PROGRESS, IN_PROGRESS, "order_id")
        await OrderEvent.create(
            order_id=order.id,
            kind=OrderEventKind.PDF_RENDER_REQUESTED,
            actor_user_id=actor.user_id,
            actor_api_key_id=actor.api_key_id,
            data={"previous": str(order.pdf_status), "by_staff": actor.is_staff},
            using_db=conn,
        )
        await outbox.add(RENDER_PDF, {"order_id": order.id}, using_db=conn)
    outbox.notify()
    await events.publish(bus, [events.order_changed(order.id, order.account_id, "PDF_RENDER_REQUESTED")])
    return await VoucherOrder.get(id=order.id)
