"""Voucher orders as partners read them: masked codes, counts, history, downloads."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import strawberry
from strawberry import relay
from strawberry.scalars import JSON
from strawberry.utils.await_maybe import AwaitableOrValue

from models import OrderEventKind, PaymentMethod, PdfStatus, Role, VoucherOrderStatus, VoucherStatus
from models import Voucher as VoucherModel
from models import VoucherOrder as VoucherOrderModel
from models import VoucherOrderLine as VoucherOrderLineModel
from schema.common import Money, global_id, node_id_field, ordered, pks, then
from schema.context import Info
from schema.pagination import Connection, Edge, PageInfo, decode_cursor, encode_cursor, page_size
from schema.planned import instances_only
from services import cancellation, codes, downloads
from services.cancellation import Blocker, OrderFacts
from services.errors import ErrorCode
from services.order_page import EventPage, LineRow, OrderRow, VoucherPage
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
    def of(cls, line: VoucherOrderLineModel | LineRow, currency: str) -> VoucherOrderLine:
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
    _id: str = node_id_field()
    id: relay.NodeID[int]
    code: str = strawberry.field(description="Masked: VS-•••••-•••••-•••••-3KQ7P.")
    status: VoucherStatus = strawberry.field(description="As of now: past its expiry it reads EXPIRED.")
    expires_at: datetime
    created_at: datetime
    used_at: datetime | None

    def __post_init__(self) -> None:
        self._id = global_id("Voucher", self.id)

    @classmethod
    @instances_only  # the planned executor (schema.planned) checks it inline
    def is_type_of(cls, obj: object, info: object) -> bool:
        # graphql-core asks it of every voucher returned; Strawberry's default for a type with an
        # interface also looks for casts and generic specialisations, which have none here.
        return isinstance(obj, cls)

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


ACTOR_DESCRIPTION = "The user's e-mail, or 'API key <name>'; null for the system."


@strawberry.type(description="Something that happened to an order: who, when, what. Never a full code.")
class VoucherOrderEvent:
    id: strawberry.ID
    kind: OrderEventKind
    created_at: datetime
    details: JSON
    actor_user_id: strawberry.Private[int | None]
    actor_api_key_id: strawberry.Private[int | None]
    actor_email: strawberry.Private[str | None]
    actor_key_name: strawberry.Private[str | None]

    @classmethod
    def of(cls, row: EventRow) -> VoucherOrderEvent:
        return cls(
            id=strawberry.ID(str(row.id)),
            kind=OrderEventKind(row.kind),
            created_at=row.created_at,
            details=row.data,
            actor_user_id=row.actor_user_id,
            actor_api_key_id=row.actor_api_key_id,
            actor_email=row.actor_email,
            actor_key_name=row.actor_key_name,
        )

    @strawberry.field(
        graphql_type=str | None, description="The user's e-mail, or 'API key <name>'; null for the system."
    )
    def actor(self, info: Info) -> AwaitableOrValue[str | None]:
        # The dashboard's page statement reads the e-mail or key name with the event; otherwise a loader does.
        if self.actor_user_id is not None:
            return self.actor_email or info.context.loaders.user_emails.load(self.actor_user_id)
        if self.actor_api_key_id is not None:
            return self._key_label(info) if self.actor_key_name is None else f"API key {self.actor_key_name}"
        return None

    async def _key_label(self, info: Info) -> str:
        assert self.actor_api_key_id is not None
        return f"API key {await info.context.loaders.api_key_names.load(self.actor_api_key_id)}"


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
    _id: str = node_id_field()
    id: relay.NodeID[int]
    number: str
    customer_name: str | None
    notes: str | None
    status: VoucherOrderStatus
    payment_method: PaymentMethod
    total: Money
    created_at: datetime
    voucher_count: int
    currency: strawberry.Private[str]
    pdf_status: strawberry.Private[PdfStatus]
    pdf_error: strawberry.Private[str | None]
    pdf_generated_at: strawberry.Private[datetime | None]
    # What the page statement of voucherOrders already read of this order (schema.orders.queries);
    # a field it did not read, or an order from elsewhere (node, a mutation), asks the loaders.
    reads: strawberry.Private[OrderRow | None] = None
    # Whether the document reads the cursor of each voucher edge (the read-ahead knows; anywhere
    # else, assume it does): a thousand base64 encodings are saved when only endCursor is read.
    voucher_cursors: strawberry.Private[bool] = True

    def __post_init__(self) -> None:
        self._id = global_id("VoucherOrder", self.id)

    @classmethod
    @instances_only  # as Voucher's
    def is_type_of(cls, obj: object, info: object) -> bool:
        return isinstance(obj, cls)

    @classmethod
    def of(cls, order: VoucherOrderModel | OrderRow, *, voucher_cursors: bool = True) -> VoucherOrder:
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
            currency=order.currency,
            pdf_status=order.pdf_status,
            pdf_error=order.pdf_error,
            pdf_generated_at=order.pdf_generated_at,
            reads=order if isinstance(order, OrderRow) else None,
            voucher_cursors=voucher_cursors,
        )

    @strawberry.field(graphql_type=list[VoucherOrderLine])
    def lines(self, info: Info) -> AwaitableOrValue[list[VoucherOrderLine]]:
        read = self.reads.lines if self.reads is not None else None
        rows: AwaitableOrValue[Sequence[LineRow | VoucherOrderLineModel]] = (
            read if read is not None else info.context.loaders.lines.load(self.id)
        )
        return then(rows, lambda lines: [VoucherOrderLine.of(line, self.currency) for line in lines])

    @strawberry.field(graphql_type=VoucherStatusCounts)
    def status_counts(self, info: Info) -> AwaitableOrValue[VoucherStatusCounts]:
        return then(self._counts(info), _status_counts)

    def _counts(self, info: Info) -> AwaitableOrValue[dict[VoucherStatus, int]]:
        read = self.reads.counts if self.reads is not None else None
        return read if read is not None else info.context.loaders.status_counts.load(self.id)

    @strawberry.field(graphql_type=Connection[Voucher], description="The order's vouchers in code order, masked.")
    def vouchers(
        self, info: Info, first: int | None = None, after: str | None = None, filter: VoucherFilter | None = None
    ) -> AwaitableOrValue[Connection[Voucher]]:
        size, _ = page_size(first, None)
        request = VoucherPage(size + 1, decode_cursor(after) if after else None, filter.status if filter else None)
        read = self.reads.vouchers.get(request) if self.reads is not None else None
        key = (self.id, request.limit, request.after_id, request.status)
        rows: AwaitableOrValue[list[VoucherRow]] = read if read is not None else info.context.loaders.vouchers.load(key)
        return then(rows, lambda found: self._voucher_page(info, request, found))

    def _voucher_page(self, info: Info, request: VoucherPage, rows: list[VoucherRow]) -> Connection[Voucher]:
        size = request.limit - 1
        shown = rows[:size]
        if self.voucher_cursors:
            edges = [Edge(cursor=encode_cursor(row.id), node=Voucher.of_row(row)) for row in shown]
        else:
            edges = [Edge(cursor="", node=Voucher.of_row(row)) for row in shown]  # never read
        return Connection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(rows) > size,
                has_previous_page=request.after_id is not None,
                start_cursor=encode_cursor(shown[0].id) if shown else None,
                end_cursor=encode_cursor(shown[-1].id) if shown else None,
            ),
            # From the status counts the same response already needs: no statement of its own.
            count=lambda: then(self._counts(info), lambda by_status: _total(by_status, request.status)),
        )

    @strawberry.field(graphql_type=bool, description="Whether voucherOrderCancel would succeed now.")
    def cancellable(self, info: Info) -> AwaitableOrValue[bool]:
        return then(self._blockers(info), lambda found: not found)

    @strawberry.field(
        graphql_type=list[CancelBlocker],
        description="Each rule that blocks cancelling now; empty when it can be cancelled.",
    )
    def cancel_blockers(self, info: Info) -> AwaitableOrValue[list[CancelBlocker]]:
        return then(self._blockers(info), lambda found: [CancelBlocker(code=b.code, message=b.message) for b in found])

    def _blockers(self, info: Info) -> AwaitableOrValue[list[Blocker]]:
        facts = OrderFacts(self.id, self.status, self.created_at)
        reads = self.reads
        if reads is None or reads.counts is None or reads.redeemed is None:
            return info.context.loaders.blockers.load(facts)
        expired = reads.counts[VoucherStatus.EXPIRED] > 0
        return cancellation.blockers_of(facts, redeemed=reads.redeemed, expired=expired, now=info.context.loaders.now)

    @strawberry.field(
        graphql_type=Connection[VoucherOrderEvent], description="What happened to the order, newest first."
    )
    def history(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> AwaitableOrValue[Connection[VoucherOrderEvent]]:
        size, _ = page_size(first, None)
        request = EventPage(size + 1, decode_cursor(after) if after else None)
        read = self.reads.events.get(request) if self.reads is not None else None
        key = (self.id, request.limit, request.before_id)
        rows: AwaitableOrValue[list[EventRow]] = read if read is not None else info.context.loaders.events.load(key)
        return then(rows, lambda found: self._history_page(info, request, found))

    def _history_page(self, info: Info, request: EventPage, rows: list[EventRow]) -> Connection[VoucherOrderEvent]:
        size = request.limit - 1
        edges = [Edge(cursor=encode_cursor(row.id), node=VoucherOrderEvent.of(row)) for row in rows[:size]]
        return Connection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(rows) > size,
                has_previous_page=request.before_id is not None,
                start_cursor=edges[0].cursor if edges else None,
                end_cursor=edges[-1].cursor if edges else None,
            ),
            count=lambda: self._event_total(info),
        )

    def _event_total(self, info: Info) -> AwaitableOrValue[int]:
        read = self.reads.event_total if self.reads is not None else None
        return read if read is not None else info.context.loaders.event_totals.load(self.id)

    @strawberry.field(description="A signed CSV download of every code, valid a few minutes (ADMIN, FINANCE).")
    def csv_url(self, info: Info) -> str | None:
        return _download_url(info, self.id, "csv")

    @strawberry.field
    def pdf(self, info: Info) -> VoucherPdf:
        ready = self.pdf_status == PdfStatus.READY
        return VoucherPdf(
            status=self.pdf_status,
            url=_download_url(info, self.id, "pdf") if ready else None,
            generated_at=self.pdf_generated_at,
            error=self.pdf_error,
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


def _total(counts: dict[VoucherStatus, int], status: VoucherStatus | None) -> int:
    return sum(counts.values()) if status is None else counts[status]


def _status_counts(counts: dict[VoucherStatus, int]) -> VoucherStatusCounts:
    return VoucherStatusCounts(
        valid_unused=counts[VoucherStatus.VALID_UNUSED],
        valid_used=counts[VoucherStatus.VALID_USED],
        expired=counts[VoucherStatus.EXPIRED],
        cancelled=counts[VoucherStatus.CANCELLED],
        total=sum(counts.values()),
    )


def _download_url(info: Info, order_id: int, kind: str) -> str | None:
    actor = info.context.actor
    if actor is None or not actor.has_role(Role.ADMIN, Role.FINANCE):
        return None
    settings = info.context.settings
    return downloads.download_url(
        secret=settings.secret_key, public_url=settings.public_url, order_id=order_id, kind=kind, actor=actor
    )
