"""Placing, cancelling and revealing voucher orders, and rendering their PDF again."""

from __future__ import annotations

import strawberry

from models import PaymentMethod
from models import VoucherOrder as VoucherOrderModel
from schema.catalogue import VoucherLineInput
from schema.common import node_pk
from schema.context import Info
from schema.errors import UserError, user_errors
from schema.orders.types import Voucher, VoucherOrder
from schema.permissions import IsAuthenticated, actor_of
from services import cancellation, orders, pdf_again, reveal
from services.errors import DomainError


@strawberry.input
class VoucherOrderCreateInput:
    lines: list[VoucherLineInput]
    customer_name: str | None = None
    notes: str | None = strawberry.field(default=None, description="E.g. an invoice number.")
    payment_method: PaymentMethod | None = strawberry.field(
        default=None, description="The account's default payment method when absent."
    )
    card_token: str | None = None
    idempotency_key: str | None = None


@strawberry.input
class VoucherOrderCancelInput:
    order_id: strawberry.ID
    idempotency_key: str | None = None


@strawberry.input
class VoucherCodesRevealInput:
    order_id: strawberry.ID


@strawberry.input
class VoucherOrderPdfRenderInput:
    order_id: strawberry.ID


@strawberry.type
class VoucherOrderPdfRenderPayload:
    order: VoucherOrder | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class VoucherOrderCreatePayload:
    order: VoucherOrder | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class VoucherOrderCancelPayload:
    order: VoucherOrder | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RevealedCode:
    voucher: Voucher
    code: str


@strawberry.type
class VoucherCodesRevealPayload:
    codes: list[RevealedCode] | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class OrderMutation:
    @strawberry.mutation(permission_classes=[IsAuthenticated], description="Partners' ADMIN, FINANCE: buy vouchers.")
    async def voucher_order_create(self, info: Info, input: VoucherOrderCreateInput) -> VoucherOrderCreatePayload:
        resources = info.context.resources
        request = orders.OrderRequest(
            lines=[line.request() for line in input.lines],
            customer_name=input.customer_name,
            notes=input.notes,
            payment_method=input.payment_method,
            card_token=input.card_token,
            idempotency_key=input.idempotency_key,
        )
        try:
            order = await orders.place_order(
                actor=actor_of(info),
                request=request,
                gateway=resources.gateway,
                cipher=resources.cipher,
                public_url=resources.settings.public_url,
                bus=resources.bus,
            )
        except DomainError as error:
            return VoucherOrderCreatePayload(errors=user_errors(error))
        return VoucherOrderCreatePayload(order=VoucherOrder.of(order))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated], description="ADMIN, FINANCE: cancel a whole order and refund it."
    )
    async def voucher_order_cancel(self, info: Info, input: VoucherOrderCancelInput) -> VoucherOrderCancelPayload:
        resources = info.context.resources
        try:
            order: VoucherOrderModel = await cancellation.cancel_order(
                actor=actor_of(info),
                order_id=node_pk(input.order_id, VoucherOrder),
                idempotency_key=input.idempotency_key,
                gateway=resources.gateway,
                public_url=resources.settings.public_url,
                bus=resources.bus,
            )
        except DomainError as error:
            return VoucherOrderCancelPayload(errors=user_errors(error))
        return VoucherOrderCancelPayload(order=VoucherOrder.of(order))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated], description="ADMIN, FINANCE: every code in full; recorded in the history."
    )
    async def voucher_codes_reveal(self, info: Info, input: VoucherCodesRevealInput) -> VoucherCodesRevealPayload:
        try:
            revealed = await reveal.reveal_codes(
                actor=actor_of(info),
                order_id=node_pk(input.order_id, VoucherOrder),
                cipher=info.context.resources.cipher,
                bus=info.context.resources.bus,
            )
        except DomainError as error:
            return VoucherCodesRevealPayload(errors=user_errors(error))
        return VoucherCodesRevealPayload(
            codes=[RevealedCode(voucher=Voucher.of_row(r.voucher), code=r.code) for r in revealed]
        )

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description=(
            "ADMIN, FINANCE, staff: render the order's PDF again (its links use today's public URL); it replaces"
            " the stored one once READY, and the history records the request. PDF_RENDER_IN_PROGRESS while a"
            " render runs; ORDER_CANCELLED for a cancelled order."
        ),
    )
    async def voucher_order_pdf_render(
        self, info: Info, input: VoucherOrderPdfRenderInput
    ) -> VoucherOrderPdfRenderPayload:
        try:
            order = await pdf_again.render_again(
                actor=actor_of(info), order_id=node_pk(input.order_id, VoucherOrder), bus=info.context.resources.bus
            )
        except DomainError as error:
            return VoucherOrderPdfRenderPayload(errors=user_errors(error))
        return VoucherOrderPdfRenderPayload(order=VoucherOrder.of(order))
