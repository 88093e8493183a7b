"""Staff-only operations."""

from __future__ import annotations

from datetime import datetime

import strawberry

from schema.accounts import Account
from schema.common import node_pk, pk_of
from schema.context import Info
from schema.errors import ClientError, UserError, user_errors
from schema.pagination import MAX_PAGE_SIZE, Connection, paginate
from schema.permissions import IsAuthenticated, actor_of
from services import outbox, staff
from services.errors import DomainError


@strawberry.input
class PartnerEnableInput:
    account_id: strawberry.ID
    enabled: bool = True


@strawberry.type
class PartnerEnablePayload:
    account: Account | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class StaffMutation:
    @strawberry.mutation(
        permission_classes=[IsAuthenticated], description="Staff: enable or disable the voucher feature."
    )
    async def partner_enable(self, info: Info, input: PartnerEnableInput) -> PartnerEnablePayload:
        try:
            account = await staff.set_partner(
                actor=actor_of(info),
                account_id=node_pk(input.account_id, Account),
                enabled=input.enabled,
                bus=info.context.resources.bus,
            )
        except DomainError as error:
            return PartnerEnablePayload(errors=user_errors(error))
        return PartnerEnablePayload(account=Account.of(account))


@strawberry.type(description="Background work that failed all its tries (staff only).")
class FailedJob:
    id: strawberry.ID
    task: str
    attempts: int
    last_error: str | None
    created_at: datetime


@strawberry.input
class JobRetryInput:
    id: strawberry.ID


@strawberry.type
class JobRetryPayload:
    retried: bool = False
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class StaffQuery:
    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="Staff: accounts, newest first; `search` matches the name or a user's e-mail (any case).",
    )
    async def accounts(
        self, info: Info, first: int | None = None, after: str | None = None, search: str | None = None
    ) -> Connection[Account]:
        try:
            query = staff.accounts_matching(actor=actor_of(info), search=search)
        except DomainError as error:
            raise ClientError(error.message, code=error.code.value) from None
        return await paginate(query, Account.of, first=first, after=after)

    @strawberry.field(permission_classes=[IsAuthenticated], description="Staff: failed background jobs, newest first.")
    async def failed_jobs(self, info: Info, first: int = 50) -> list[FailedJob]:
        if not actor_of(info).is_staff:
            raise ClientError("Only staff may do this.", code="PERMISSION_DENIED")
        rows = await outbox.failed_messages(limit=max(0, min(first, MAX_PAGE_SIZE)))
        return [
            FailedJob(
                id=strawberry.ID(str(r.id)),
                task=r.task,
                attempts=r.attempts,
                last_error=r.last_error,
                created_at=r.created_at,
            )
            for r in rows
        ]


@strawberry.type
class JobMutation:
    @strawberry.mutation(permission_classes=[IsAuthenticated], description="Staff: queue a failed job again.")
    async def job_retry(self, info: Info, input: JobRetryInput) -> JobRetryPayload:
        try:
            actor_of(info).require_staff()
            await outbox.retry_failed(pk_of(input.id))
        except DomainError as error:
            return JobRetryPayload(errors=user_errors(error))
        return JobRetryPayload(retried=True)
