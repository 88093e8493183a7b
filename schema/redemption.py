"""Redeeming vouchers and the certificate requests it creates."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import strawberry
from strawberry import relay

from models import CertificateRequest as CertificateRequestModel
from models import CertificateRequestStatus, VoucherStatus
from schema.common import node_pk, ordered, pks
from schema.context import Info
from schema.errors import ClientError, UserError, rate_limited, service_unavailable, user_errors
from schema.pagination import Connection, paginate
from schema.permissions import IsAuthenticated, actor_of
from services import codes, redemption
from services.errors import DomainError, ErrorCode

strawberry.enum(CertificateRequestStatus, name="CertificateRequestStatus")


@strawberry.type(description="What a code buys, and whether it can be used now.")
class RedeemableVoucher:
    code: str = strawberry.field(description="Masked.")
    product_code: str
    product_name: str
    validity_years: int
    fqdns: int
    wildcards: int
    expires_at: datetime
    status: VoucherStatus
    redeemable: bool

    @classmethod
    def of(cls, found: redemption.Redeemable) -> RedeemableVoucher:
        line = found.line
        return cls(
            code=codes.masked(found.voucher.code_hint),
            product_code=line.product_code,
            product_name=line.product_name,
            validity_years=line.validity_years,
            fqdns=line.fqdns,
            wildcards=line.wildcards,
            expires_at=found.voucher.expires_at,
            status=found.status,
            redeemable=found.redeemable,
        )


@strawberry.type(description="A request for a certificate, made by redeeming a voucher.")
class CertificateRequest(relay.Node):
    id: relay.NodeID[int]
    common_name: str
    additional_fqdns: list[str]
    wildcards: list[str]
    has_csr: bool
    status: CertificateRequestStatus
    created_at: datetime
    issued_at: datetime | None
    ended_at: datetime | None

    @classmethod
    def of(cls, row: CertificateRequestModel) -> CertificateRequest:
        return cls(
            id=row.id,
            common_name=row.common_name,
            additional_fqdns=list(row.additional_fqdns),
            wildcards=list(row.wildcards),
            has_csr=row.csr is not None,
            status=row.status,
            created_at=row.created_at,
            issued_at=row.issued_at,
            ended_at=row.ended_at,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]  # Strawberry declares it with overloads
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[CertificateRequest | None]:
        actor = info.context.actor
        if actor is None or actor.account_id is None:
            return [None for _ in node_ids]
        rows = await CertificateRequestModel.filter(account_id=actor.account_id, id__in=pks(node_ids))
        return ordered(rows, node_ids, cls.of)


@strawberry.input
class VoucherRedeemInput:
    code: str
    common_name: str
    additional_fqdns: list[str] | None = None
    wildcards: list[str] | None = None
    csr: str | None = strawberry.field(default=None, description="Optional, PEM; its names must match the request's.")


@strawberry.input
class CertificateRequestCancelInput:
    id: strawberry.ID


@strawberry.input
class CertificateRevokeInput:
    id: strawberry.ID


@strawberry.type
class VoucherRedeemPayload:
    certificate_request: CertificateRequest | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type(description="The request ended; `notices` tells when the voucher stays used (REUSE_WINDOW_CLOSED).")
class CertificateRequestEndPayload:
    certificate_request: CertificateRequest | None = None
    voucher_released: bool = False
    notices: list[UserError] = strawberry.field(default_factory=list)
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RedemptionQuery:
    @strawberry.field(description="What a code buys (null when no voucher has it). Failed lookups are rate-limited.")
    async def voucher_by_code(self, info: Info, code: str) -> RedeemableVoucher | None:
        resources = info.context.resources
        try:
            found = await redemption.voucher_by_code(
                code=code,
                cipher=resources.cipher,
                client=info.context.client,
                actor=info.context.actor,
                limiter=resources.limiter,
            )
        except DomainError as error:
            if error.code == ErrorCode.RATE_LIMITED:
                raise rate_limited(error) from error
            if error.code == ErrorCode.SERVICE_UNAVAILABLE:
                raise service_unavailable(error) from error
            if error.code == ErrorCode.INVALID:
                raise ClientError(f"code: {error.message}", code="INVALID") from error
            return None
        return RedeemableVoucher.of(found)

    @strawberry.field(permission_classes=[IsAuthenticated], description="The account's certificate requests.")
    async def certificate_requests(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[CertificateRequest]:
        account_id = actor_of(info).account_id or -1
        query = CertificateRequestModel.filter(account_id=account_id)
        return await paginate(query, CertificateRequest.of, first=first, after=after)


async def _end(info: Info, global_id: strawberry.ID, *, revoke: bool) -> CertificateRequestEndPayload:
    try:
        ended = await redemption.end_request(
            actor=actor_of(info),
            request_id=node_pk(global_id, CertificateRequest),
            revoke=revoke,
            bus=info.context.resources.bus,
        )
    except DomainError as error:
        return CertificateRequestEndPayload(errors=user_errors(error))
    return CertificateRequestEndPayload(
        certificate_request=CertificateRequest.of(ended.request),
        voucher_released=ended.voucher_released,
        notices=user_errors(ended.notice) if ended.notice else [],
    )


@strawberry.type
class RedemptionMutation:
    @strawberry.mutation(permission_classes=[IsAuthenticated], description="Use a voucher: request a certificate.")
    async def voucher_redeem(self, info: Info, input: VoucherRedeemInput) -> VoucherRedeemPayload:
        resources = info.context.resources
        request = redemption.RequestInput(
            code=input.code,
            common_name=input.common_name,
            additional_fqdns=input.additional_fqdns or [],
            wildcards=input.wildcards or [],
            csr=input.csr,
        )
        try:
            created = await redemption.redeem(
                actor=actor_of(info),
                request=request,
                cipher=resources.cipher,
                client=info.context.client,
                limiter=resources.limiter,
                bus=resources.bus,
            )
        except DomainError as error:
            return VoucherRedeemPayload(errors=user_errors(error))
        return VoucherRedeemPayload(certificate_request=CertificateRequest.of(created))

    @strawberry.mutation(permission_classes=[IsAuthenticated], description="Cancel a submitted request.")
    async def certificate_request_cancel(
        self, info: Info, input: CertificateRequestCancelInput
    ) -> CertificateRequestEndPayload:
        return await _end(info, input.id, revoke=False)

    @strawberry.mutation(permission_classes=[IsAuthenticated], description="Revoke an issued certificate.")
    async def certificate_revoke(self, info: Info, input: CertificateRevokeInput) -> CertificateRequestEndPayload:
        return await _end(info, input.id, revoke=True)

    @strawberry.mutation(permission_classes=[IsAuthenticated], description="Staff: mark a request issued.")
    async def certificate_request_issue(
        self, info: Info, input: CertificateRequestCancelInput
    ) -> CertificateRequestEndPayload:
        try:
            issued = await redemption.issue_request(
                actor=actor_of(info), request_id=node_pk(input.id, CertificateRequest), bus=info.context.resources.bus
            )
        except DomainError as error:
            return CertificateRequestEndPayload(errors=user_errors(error))
        return CertificateRequestEndPayload(certificate_request=CertificateRequest.of(issued))
