"""Voucher orders as partners read them: masked codes, counts, history, downloads."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import strawberry
from strawberry import relay
from strawberry.scalars import JSON

from models import OrderEventKind, PaymentMethod, PdfStatus, Role, VoucherOrderStatus, VoucherStatus
from models import Voucher as VoucherModel
from models import VoucherOrder as VoucherOrderModel
from models import VoucherOrderLine as VoucherOrderLineModel
from schema.common import Money, ordered, pks
from schema.context import Info
from schema.pagination import Connection, Edge, PageInfo, decode_cursor, encode_cursor, page_size, paginate
from services import codes, downloads
from services.errors import ErrorCode
from services.order_reads import EventRow, VoucherRow, effective_status

strawberry.enum(VoucherStatus, name="VoucherStatus")
strawberry.enum(VoucherOrderStatus, name="VoucherOrderStatus")
strawberry.enum(OrderEventKind, name="VoucherOrderEventKind")
strawberry.enum(PdfStatus, name="PdfStatus")


@strawberry.type
class VoucherOrderLine:
    position: int
    product_code: str
    product_name: str
    quantity: int
    validity_years: int
    fqdns: int
    wildcards: int
    unit_price: Money
    line_price: Money

    @classmethod
    def of(cls, line: VoucherOrderLineModel, currency: str) -> VoucherOrderLine:
        return cls(
            position=line.position,
            product_code=line.product_code,
            product_name=line.product_name,
            quantity=line.quantity,
            validity_years=line.validity_years,
            fqdns=line.fqdns,
            wildcards=line.wildcards,
            unit_price=Money.of(line.unit_price, currency),
            line_price=Money.of(line.line_total, currency),
        )


@strawberry.type(description="A prepaid code. Lists show it masked; the full code only through a reveal.")
class Voucher(relay.Node):
    id: relay.NodeID[int]
    code: str = strawberry.field(description="Masked: VS-•••••-•••••-•••••-3KQ7P.")
    status: VoucherStatus = strawberry.field(description="As of now: past its expiry it reads EXPIRED.")
    expires_at: datetime
    created_at: datetime
    used_at: datetime | None

    @classmethod
    def of_row(cls, row: VoucherRow) -> Voucher:
        return cls(
            id=row.id,
            code=codes.masked(row.code_hint),
            status=row.status,
            expires_at=row.expires_at,
            created_at=row.created_at,
            used_at=row.used_at,
        )

    @classmethod
    def of(cls, voucher: VoucherModel, now: datetime) -> Voucher:
        return cls(
            id=voucher.id,
            code=codes.masked(voucher.code_hint),
            status=effective_status(voucher.status, voucher.expires_at, now),
            expires_at=voucher.expires_at,
            created_at=voucher.created_at,
            used_at=voucher.used_at,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]  # Strawberry declares it with overloads
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Voucher | None]:
        actor = info.context.actor
        if actor is None or actor.account_id is None:
            return [None for _ in node_ids]
        rows = await VoucherModel.filter(account_id=actor.account_id, id__in=pks(node_ids))
        now = info.context.loaders.now
        return ordered(rows, node_ids, lambda row: cls.of(row, now))


@strawberry.type
class VoucherStatusCounts:
    valid_unused: int
    valid_used: int
    expired: int
    cancelled: int
    total: int


@strawberry.type(description="A rule that keeps the order from being cancelled now.")
class CancelBlocker:
    code: ErrorCode
    message: str


@strawberry.type(description="Something that happened to an order: who, when, what. Never a full code.")
class VoucherOrderEvent:
    id: strawberry.ID
    kind: OrderEventKind
    created_at: datetime
    details: JSON
    actor_user_id: strawberry.Private[int | None]
    actor_api_key_id: strawberry.Private[int | None]

    @classmethod
    def of(cls, row: EventRow) -> VoucherOrderEvent:
        return cls(
            id=strawberry.ID(str(row.id)),
            kind=OrderEventKind(row.kind),
            created_at=row.created_at,
            details=row.data,
            actor_user_id=row.actor_user_id,
            actor_api_key_id=row.actor_api_key_id,
        )

    @strawberry.field(description="The user's e-mail, or 'API key <name>'; null for the system.")
    async def actor(self, info: Info) -> str | None:
        if self.actor_user_id is not None:
            return await info.context.loaders.user_emails.load(self.actor_user_id)
        if self.actor_api_key_id is not None:
            name = await info.context.loaders.api_key_names.load(self.actor_api_key_id)
            return f"API key {name}"
        return None


@strawberry.type
class VoucherPdf:
    status: PdfStatus
    url: str | None = strawberry.field(description="A signed link valid a few minutes, once READY.")
    generated_at: datetime | None
    error: str | None


@strawberry.input
class VoucherFilter:
    status: VoucherStatus | None = None


@strawberry.type(description="Vouchers bought together for one customer.")
class VoucherOrder(relay.Node):
    id: relay.NodeID[int]
    number: str
    customer_name: str | None
    notes: str | None
    status: VoucherOrderStatus
    payment_method: PaymentMethod
    total: Money
    created_at: datetime
    voucher_count: int
    model: strawberry.Private[VoucherOrderModel]

    @classmethod
    def of(cls, order: VoucherOrderModel) -> VoucherOrder:
        return cls(
            id=order.id,
            number=order.number,
            customer_name=order.customer_name,
            notes=order.notes,
            status=order.status,
            payment_method=order.payment_method,
            total=Money.of(order.total, order.currency),
            created_at=order.created_at,
            voucher_count=order.voucher_count,
            model=order,
        )

    @strawberry.field
    async def lines(self, info: Info) -> list[VoucherOrderLine]:
        rows = await info.context.loaders.lines.load(self.id)
        return [VoucherOrderLine.of(line, self.model.currency) for line in rows]

    @strawberry.field
    async def status_counts(self, info: Info) -> VoucherStatusCounts:
        counts = await info.context.loaders.status_counts.load(self.id)
        return VoucherStatusCounts(
            valid_unused=counts[VoucherStatus.VALID_UNUSED],
            valid_used=counts[VoucherStatus.VALID_USED],
            expired=counts[VoucherStatus.EXPIRED],
            cancelled=counts[VoucherStatus.CANCELLED],
            total=sum(counts.values()),
        )

    @strawberry.field(description="The order's vouchers in code order, masked.")
    async def vouchers(
        self, info: Info, first: int | None = None, after: str | None = None, filter: VoucherFilter | None = None
    ) -> Connection[Voucher]:
        size, _ = page_size(first, None)
        after_id = decode_cursor(after) if after else None
        status = filter.status if filter else None
        loaders = info.context.loaders
        rows = await loaders.vouchers.load((self.id, size + 1, after_id, status))
        edges = [Edge(cursor=encode_cursor(row.id), node=Voucher.of_row(row)) for row in rows[:size]]
        order_id = self.id

        async def count() -> int:
            return int(await loaders.voucher_totals.load((order_id, status)))

        return Connection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(rows) > size,
                has_previous_page=after_id is not None,
                start_cursor=edges[0].cursor if edges else None,
                end_cursor=edges[-1].cursor if edges else None,
            ),
            count=count,
        )

    @strawberry.field(description="Whether voucherOrderCancel would succeed now.")
    async def cancellable(self, info: Info) -> bool:
        return not await info.context.loaders.blockers.load(self.model)

    @strawberry.field(description="Each rule that blocks cancelling now; empty when it can be cancelled.")
    async def cancel_blockers(self, info: Info) -> list[CancelBlocker]:
        found = await info.context.loaders.blockers.load(self.model)
        return [CancelBlocker(code=b.code, message=b.message) for b in found]

    @strawberry.field(description="What happened to the order, newest first.")
    async def history(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[VoucherOrderEvent]:
        size, _ = page_size(first, None)
        before_id = decode_cursor(after) if after else None
        loaders = info.context.loaders
        rows = await loaders.events.load((self.id, size + 1, before_id))
        edges = [Edge(cursor=encode_cursor(row.id), node=VoucherOrderEvent.of(row)) for row in rows[:size]]
        order_id = self.id

        async def count() -> int:
            return await loaders.event_totals.load(order_id)

        return Connection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(rows) > size,
                has_previous_page=before_id is not None,
                start_cursor=edges[0].cursor if edges else None,
                end_cursor=edges[-1].cursor if edges else None,
            ),
            count=count,
        )

    @strawberry.field(description="A signed CSV download of every code, valid a few minutes (ADMIN, FINANCE).")
    def csv_url(self, info: Info) -> str | None:
        return _download_url(info, self.id, "csv")

    @strawberry.field
    def pdf(self, info: Info) -> VoucherPdf:
        order = self.model
        ready = order.pdf_status == PdfStatus.READY
        return VoucherPdf(
            status=order.pdf_status,
            url=_download_url(info, self.id, "pdf") if ready else None,
            generated_at=order.pdf_generated_at,
            error=order.pdf_error,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]  # Strawberry declares it with overloads
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[VoucherOrder | None]:
        actor = info.context.actor
        if actor is None or actor.account_id is None:
            return [None for _ in node_ids]
        rows = await VoucherOrderModel.filter(account_id=actor.account_id, id__in=pks(node_ids))
        return ordered(rows, node_ids, cls.of)


def _download_url(info: Info, order_id: int, kind: str) -> str | None:
    actor = info.context.actor
    if actor is None or not actor.has_role(Role.ADMIN, Role.FINANCE):
        return None
    settings = info.context.settings
    return downloads.download_url(
        secret=settings.secret_key, public_url=settings.public_url, order_id=order_id, kind=kind, actor=actor
    )


@strawberry.input
class VoucherOrderFilter:
    status: VoucherOrderStatus | None = None
    customer_name: str | None = strawberry.field(default=None, description="Part of the name, any case.")
    created_after: datetime | None = None
    created_before: datetime | None = None


async def voucher_orders(
    info: Info,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    filter: VoucherOrderFilter | None,
) -> Connection[VoucherOrder]:
    """The signed-in account's orders, newest first."""
    actor = info.context.actor
    query = VoucherOrderModel.filter(account_id=actor.account_id if actor and actor.account_id else -1)
    if filter is not None:
        if filter.status is not None:
            query = query.filter(status=filter.status)
        if filter.customer_name:
            query = query.filter(customer_name__icontains=filter.customer_name.strip()[:200])
        if filter.created_after is not None:
            query = query.filter(created_at__gte=filter.created_after)
        if filter.created_before is not None:
            query = query.filter(created_at__lt=filter.created_before)
    return await paginate(query, VoucherOrder.of, first=first, after=after, last=last, before=before)
