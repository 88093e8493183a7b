"""Showing full codes: only to the owning partner's ADMIN and FINANCE, and always recorded."""

from __future__ import annotations

from dataclasses import dataclass

from tortoise.transactions import in_transaction

from models import OrderEvent, OrderEventKind, Role, Voucher, VoucherOrder
from services.actors import Actor
from services.codes import CodeCipher, display
from services.errors import not_found


@dataclass(frozen=True)
class RevealedCode:
    voucher: Voucher
    code: str


async def reveal_codes(*, actor: Actor, order_id: int, cipher: CodeCipher) -> list[RevealedCode]:
    """Every code of an order in full; the history records who saw them and when."""
    actor.require_role(Role.ADMIN, Role.FINANCE)
    account_id = actor.require_account()
    order = await VoucherOrder.filter(id=order_id, account_id=account_id).first()
    if order is None:
        raise not_found("order_id", "No such order.")
    async with in_transaction() as conn:
        vouchers = await Voucher.filter(order_id=order.id).using_db(conn).order_by("id")
        await OrderEvent.create(
            order_id=order.id,
            kind=OrderEventKind.CODES_REVEALED,
            actor_user_id=actor.user_id,
            actor_api_key_id=actor.api_key_id,
            data={"count": len(vouchers)},
            using_db=conn,
        )
    return [RevealedCode(v, display(cipher.open(v.code_ciphertext, v.code_digest))) for v in vouchers]
