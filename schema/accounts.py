"""Accounts, users, sessions and API keys: types, queries and mutations."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import strawberry
from strawberry import relay

from models import Account as AccountModel
from models import ApiKey as ApiKeyModel
from models import ApiKeyChannel as ApiKeyChannelModel
from models import FinanceSettings as FinanceSettingsModel
from models import LedgerEntry as LedgerEntryModel
from models import Role as RoleModel
from models import User as UserModel
from schema.common import Money, node_pk, ordered, pks
from schema.context import Info
from schema.errors import UserError, user_errors
from schema.finance.types import FinanceSettings, LedgerEntry, LedgerFilter
from schema.pagination import Connection, paginate
from schema.permissions import IsAuthenticated, actor_of
from schema.webhooks import WebhookEndpoint, endpoints_of
from services import accounts
from services.errors import DomainError

# The GraphQL enums are the stored enums, registered with Strawberry.
strawberry.enum(RoleModel, name="Role")
strawberry.enum(ApiKeyChannelModel, name="ApiKeyChannel")


@strawberry.type
class User(relay.Node):
    id: relay.NodeID[int]
    email: str
    role: RoleModel | None
    is_staff: bool
    created_at: datetime

    @classmethod
    def of(cls, user: UserModel) -> User:
        return cls(id=user.id, email=user.email, role=user.role, is_staff=user.is_staff, created_at=user.created_at)

    @classmethod
    async def resolve_nodes(  # type: ignore[override]  # Strawberry declares it with overloads
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[User | None]:
        actor = info.context.actor
        if actor is None or actor.account_id is None:
            return [None for _ in node_ids]
        rows = await UserModel.filter(account_id=actor.account_id, id__in=pks(node_ids))
        return ordered(rows, node_ids, cls.of)


@strawberry.type
class ApiKey(relay.Node):
    id: relay.NodeID[int]
    name: str
    channel: ApiKeyChannelModel
    prefix: str = strawberry.field(description="The first characters of the secret, to recognise it.")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKeyModel) -> ApiKey:
        return cls(
            id=key.id,
            name=key.name,
            channel=key.channel,
            prefix=key.prefix,
            created_at=key.created_at,
            last_used_at=key.last_used_at,
            revoked_at=key.revoked_at,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]  # Strawberry declares it with overloads
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[ApiKey | None]:
        actor = info.context.actor
        if actor is None or actor.account_id is None or not actor.has_role(RoleModel.ADMIN):
            return [None for _ in node_ids]
        rows = await ApiKeyModel.filter(account_id=actor.account_id, id__in=pks(node_ids))
        return ordered(rows, node_ids, cls.of)


@strawberry.type
class Account(relay.Node):
    id: relay.NodeID[int]
    name: str
    currency: str
    locale: str
    is_partner: bool = strawberry.field(description="Whether staff enabled the voucher feature.")
    created_at: datetime
    balance_minor: strawberry.Private[int]

    @classmethod
    def of(cls, account: AccountModel) -> Account:
        return cls(
            id=account.id,
            name=account.name,
            currency=account.currency,
            locale=account.locale,
            is_partner=account.is_partner,
            created_at=account.created_at,
            balance_minor=account.balance,
        )

    @strawberry.field
    def balance(self) -> Money:
        return Money.of(self.balance_minor, self.currency)

    @strawberry.field(description="The account's users, newest first.")
    async def users(
        self, first: int | None = None, after: str | None = None, last: int | None = None, before: str | None = None
    ) -> Connection[User]:
        query = UserModel.filter(account_id=self.id)
        return await paginate(query, User.of, first=first, after=after, last=last, before=before)

    @strawberry.field(description="The account's API keys, newest first (ADMIN only; empty otherwise).")
    async def api_keys(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[ApiKey]:
        actor = actor_of(info)
        allowed = actor.has_role(RoleModel.ADMIN) and actor.account_id == self.id
        query = ApiKeyModel.filter(account_id=self.id if allowed else -1)
        return await paginate(query, ApiKey.of, first=first, after=after, last=last, before=before)

    @strawberry.field
    async def finance_settings(self) -> FinanceSettings:
        return FinanceSettings.of(await FinanceSettingsModel.get(account_id=self.id), self.currency)

    @strawberry.field(description="The balance's movements, newest first. Every role may read it.")
    async def ledger(
        self,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: LedgerFilter | None = None,
    ) -> Connection[LedgerEntry]:
        query = LedgerEntryModel.filter(account_id=self.id)
        if filter is not None:
            if filter.kinds:
                query = query.filter(kind__in=list(filter.kinds))
            if filter.created_after is not None:
                query = query.filter(created_at__gte=filter.created_after)
            if filter.created_before is not None:
                query = query.filter(created_at__lt=filter.created_before)
        currency = self.currency
        return await paginate(
            query, lambda row: LedgerEntry.of(row, currency), first=first, after=after, last=last, before=before
        )

    @strawberry.field(description="Webhook endpoints, newest first (ADMIN, FINANCE and API keys; empty otherwise).")
    async def webhook_endpoints(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[WebhookEndpoint]:
        return await endpoints_of(info, self.id, first=first, after=after, last=last, before=before)

    @classmethod
    async def resolve_nodes(  # type: ignore[override]  # Strawberry declares it with overloads
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Account | None]:
        actor = info.context.actor
        if actor is None or actor.account_id is None:
            return [None for _ in node_ids]
        rows = await AccountModel.filter(id=actor.account_id, id__in=pks(node_ids))
        return ordered(rows, node_ids, cls.of)


@strawberry.type(description="The signed-in user and its account (none for staff).")
class Viewer:
    user: User | None = strawberry.field(description="None when the request comes with an API key.")
    account: Account | None


@strawberry.input
class SignUpInput:
    email: str
    password: str
    account_name: str
    locale: str | None = None


@strawberry.input
class SignInInput:
    email: str
    password: str


@strawberry.input
class ApiKeyCreateInput:
    name: str
    channel: ApiKeyChannelModel = ApiKeyChannelModel.API


@strawberry.input
class ApiKeyRevokeInput:
    id: strawberry.ID


@strawberry.input
class UserCreateInput:
    email: str
    password: str
    role: RoleModel


@strawberry.input
class AccountUpdateInput:
    name: str | None = None
    locale: str | None = strawberry.field(default=None, description="en, de or fr: documents, e-mails, the console.")


@strawberry.type
class AccountUpdatePayload:
    account: Account | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class SignUpPayload:
    user: User | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class SignInPayload:
    token: str | None = None
    expires_at: datetime | None = None
    user: User | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class SignOutPayload:
    signed_out: bool = False
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ApiKeyCreatePayload:
    api_key: ApiKey | None = None
    secret: str | None = strawberry.field(default=None, description="Shown this once; store it now.")
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ApiKeyRevokePayload:
    api_key: ApiKey | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class UserCreatePayload:
    user: User | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class AccountQuery:
    @strawberry.field(permission_classes=[IsAuthenticated])
    async def viewer(self, info: Info) -> Viewer:
        actor = actor_of(info)
        if actor.user_id is None:  # an API key: its account, no person
            account = await AccountModel.get(id=actor.require_account())
            return Viewer(user=None, account=Account.of(account))
        user = await UserModel.get(id=actor.user_id).select_related("account")  # one statement, joined
        return Viewer(user=User.of(user), account=Account.of(user.account) if user.account else None)


@strawberry.type
class AccountMutation:
    @strawberry.mutation(description="Create an account and its first ADMIN user.")
    async def sign_up(self, info: Info, input: SignUpInput) -> SignUpPayload:
        try:
            user = await accounts.sign_up(
                email=input.email,
                password=input.password,
                account_name=input.account_name,
                locale=input.locale,
                public_url=info.context.settings.public_url,
            )
        except DomainError as error:
            return SignUpPayload(errors=user_errors(error))
        return SignUpPayload(user=User.of(user))

    @strawberry.mutation(description="Exchange e-mail and password for a session token.")
    async def sign_in(self, info: Info, input: SignInInput) -> SignInPayload:
        try:
            signed_in = await accounts.sign_in(
                email=input.email,
                password=input.password,
                client=info.context.client,
                limiter=info.context.resources.limiter,
            )
        except DomainError as error:
            return SignInPayload(errors=user_errors(error))
        return SignInPayload(
            token=signed_in.token,
            expires_at=signed_in.expires_at,
            user=User.of(signed_in.user),
        )

    @strawberry.mutation(permission_classes=[IsAuthenticated], description="Revoke this session's token.")
    async def sign_out(self, info: Info) -> SignOutPayload:
        try:
            await accounts.sign_out(actor=actor_of(info))
        except DomainError as error:
            return SignOutPayload(errors=user_errors(error))
        return SignOutPayload(signed_out=True)

    @strawberry.mutation(permission_classes=[IsAuthenticated], description="ADMIN: add a user to the account.")
    async def user_create(self, info: Info, input: UserCreateInput) -> UserCreatePayload:
        try:
            user = await accounts.user_create(
                actor=actor_of(info), email=input.email, password=input.password, role=input.role
            )
        except DomainError as error:
            return UserCreatePayload(errors=user_errors(error))
        return UserCreatePayload(user=User.of(user))

    @strawberry.mutation(permission_classes=[IsAuthenticated], description="ADMIN: create an API key.")
    async def api_key_create(self, info: Info, input: ApiKeyCreateInput) -> ApiKeyCreatePayload:
        try:
            created = await accounts.api_key_create(actor=actor_of(info), name=input.name, channel=input.channel)
        except DomainError as error:
            return ApiKeyCreatePayload(errors=user_errors(error))
        return ApiKeyCreatePayload(api_key=ApiKey.of(created.api_key), secret=created.secret)

    @strawberry.mutation(permission_classes=[IsAuthenticated], description="ADMIN: revoke an API key.")
    async def api_key_revoke(self, info: Info, input: ApiKeyRevokeInput) -> ApiKeyRevokePayload:
        try:
            key = await accounts.api_key_revoke(actor=actor_of(info), api_key_id=node_pk(input.id, ApiKey))
        except DomainError as error:
            return ApiKeyRevokePayload(errors=user_errors(error))
        return ApiKeyRevokePayload(api_key=ApiKey.of(key))

    @strawberry.mutation(permission_classes=[IsAuthenticated], description="ADMIN: the account's name and locale.")
    async def account_update(self, info: Info, input: AccountUpdateInput) -> AccountUpdatePayload:
        try:
            account = await accounts.account_update(
                actor=actor_of(info), name=input.name, locale=input.locale, bus=info.context.resources.bus
            )
        except DomainError as error:
            return AccountUpdatePayload(errors=user_errors(error))
        return AccountUpdatePayload(account=Account.of(account))
