"""Staff-only operations."""

from __future__ import annotations

import strawberry
from strawberry import relay

from schema.accounts import Account
from schema.common import node_pk
from schema.context import Info
from schema.errors import UserError, user_errors
from schema.permissions import IsAuthenticated, actor_of
from services import staff
from services.errors import DomainError


@strawberry.input
class PartnerEnableInput:
    account_id: relay.GlobalID
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
                actor=actor_of(info), account_id=node_pk(input.account_id, Account), enabled=input.enabled
            )
        except DomainError as error:
            return PartnerEnablePayload(errors=user_errors(error))
        return PartnerEnablePayload(account=Account.of(account))
