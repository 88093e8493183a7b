"""Showing full codes: only to the owning partner's ADMIN and FINANCE, and always recorded."""

from __future__ import annotations

from dataclasses import dataclass

from tortoise.transactions import in_transaction

from infra import clock
from models import OrderEvent, OrderEventKind, Role, Voucher, VoucherOrder
from services import events
from services.actors import Actor
from services.codes import CodeCipher, display
from services.errors import not_found
from services.events import EventBus
from services.order_reads import VoucherRow, effective_status


@dataclass(frozen=True)
class RevealedCode:
    voucher: VoucherRow
    code: str


async def reveal_codes(*, actor: Actor, order_id: int, cipher: CodeCipher, bus: EventBus) -> list[RevealedCode]:
    """Every code of an order in full; the history records who saw them and when."""
    actor.require_role(Role.ADMIN, Role.FINANCE)
    account_id = actor.require_account()
    order = await VoucherOrder.filter(id=order_id, account_id=account_id).first()
    if order is None:
        raise not_found("order_id", "No such order.")
    now = clock.now()
    async with in_transaction() as conn:
        # Plain rows, not model instances: an order holds up to 10,000 vouchers.
        rows = (
            await Voucher.filter(order_id=order.id)
            .using_db(conn)
            .order_by("id")
            .values(
                "id",
                "line_id",
                "code_hint",
                "status",
                "expires_at",
                "created_at",
                "used_at",
                "code_ciphertext",
                "code_digest",
            )
        )
        await OrderEvent.create(
            order_id=order.id,
            kind=OrderEventKind.CODES_REVEALED,
            actor_user_id=actor.user_id,
            actor_api_key_id=actor.api_key_id,
            data={"count": len(rows)},
            using_db=conn,
        )
    await events.publish(bus, [events.order_changed(order.id, account_id, "CODES_REVEALED")])
    return [
        RevealedCode(
            voucher=VoucherRow(
                id=row["id"],
                order_id=order.id,
                line_id=row["line_id"],
                code_hint=row["code_hint"],
                status=effective_status(row["status"], row["expires_at"], now),
                expires_at=row["expires_at"],
                created_at=row["created_at"],
                used_at=row["used_at"],
            ),
            code=display(cipher.open(row["code_ciphertext"], row["code_digest"])),
        )
        for row in rows
    ]
