"""Webhook endpoints and their deliveries: types, the account's list, and the ADMIN mutations."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import strawberry
from strawberry import relay

from models import WebhookDelivery as WebhookDeliveryModel
from models import WebhookDeliveryStatus as WebhookDeliveryStatusModel
from models import WebhookEndpoint as WebhookEndpointModel
from models import WebhookEventType as WebhookEventTypeModel
from schema.common import node_pk, ordered, pks
from schema.context import Info
from schema.errors import UserError, user_errors
from schema.pagination import Connection, paginate
from schema.permissions import IsAuthenticated, actor_of
from services import webhooks
from services.actors import Actor
from services.errors import DomainError
from services.webhook_secrets import SecretCipher
from services.webhook_urls import SystemResolver

strawberry.enum(WebhookEventTypeModel, name="WebhookEventType", description="What a webhook endpoint hears of.")
strawberry.enum(WebhookDeliveryStatusModel, name="WebhookDeliveryStatus")

_RESOLVER = SystemResolver()


def _readable(actor: Actor | None) -> int:
    """The account whose webhooks the actor may read; -1 (nothing) for MEMBERs and staff."""
    return actor.account_id if actor is not None and webhooks.can_read(actor) and actor.account_id else -1


@strawberry.type(description="One event sent (or to be sent) to one endpoint, and how its attempts went.")
class WebhookDelivery(relay.Node):
    id: relay.NodeID[int]
    event_id: str = strawberry.field(description="The webhook-id header: the same on every attempt.")
    event_type: str = strawberry.field(description='The payload\'s type, e.g. "voucher.redeemed".')
    status: WebhookDeliveryStatusModel
    attempts: int
    last_status_code: int | None
    last_response_body: str | None = strawberry.field(description="The first 1024 bytes of the last answer.")
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime
    payload: str = strawberry.field(description="The JSON body, exactly as sent.")

    @classmethod
    def of(cls, row: WebhookDeliveryModel) -> WebhookDelivery:
        return cls(
            id=row.id,
            event_id=row.event_id,
            event_type=row.event_type,
            status=row.status,
            attempts=row.attempts,
            last_status_code=row.last_status_code,
            last_response_body=row.last_response_body,
            last_error=row.last_error,
            next_attempt_at=row.next_attempt_at,
            delivered_at=row.delivered_at,
            created_at=row.created_at,
            payload=row.payload,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]  # Strawberry declares it with overloads
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[WebhookDelivery | None]:
        rows = await WebhookDeliveryModel.filter(account_id=_readable(info.context.actor), id__in=pks(node_ids))
        return ordered(rows, node_ids, cls.of)


@strawberry.input
class WebhookDeliveryFilter:
    status: WebhookDeliveryStatusModel | None = None


@strawberry.type(description="A URL of the account's that hears of the events it subscribes to, signed.")
class WebhookEndpoint(relay.Node):
    id: relay.NodeID[int]
    url: str
    events: list[WebhookEventTypeModel]
    enabled: bool
    description: str
    disabled_reason: str | None
    previous_secret_expires_at: datetime | None = strawberry.field(
        description="Until then the secret before the last rotation signs too."
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: WebhookEndpointModel) -> WebhookEndpoint:
        return cls(
            id=row.id,
            url=row.url,
            events=[WebhookEventTypeModel(e) for e in row.events],
            enabled=row.enabled,
            description=row.description,
            disabled_reason=row.disabled_reason,
            previous_secret_expires_at=row.previous_secret_expires_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    @strawberry.field(description="Its deliveries, newest first.")
    async def deliveries(
        self,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: WebhookDeliveryFilter | None = None,
    ) -> Connection[WebhookDelivery]:
        # The endpoint was read scoped to the tenant: its deliveries are the tenant's.
        query = WebhookDeliveryModel.filter(endpoint_id=self.id)
        if filter is not None and filter.status is not None:
            query = query.filter(status=filter.status)
        return await paginate(query, WebhookDelivery.of, first=first, after=after, last=last, before=before)

    @classmethod
    async def resolve_nodes(  # type: ignore[override]  # Strawberry declares it with overloads
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[WebhookEndpoint | None]:
        rows = await WebhookEndpointModel.filter(account_id=_readable(info.context.actor), id__in=pks(node_ids))
        return ordered(rows, node_ids, cls.of)


async def endpoints_of(
    info: Info, account_id: int, *, first: int | None, after: str | None, last: int | None, before: str | None
) -> Connection[WebhookEndpoint]:
    """Account.webhookEndpoints: ADMIN, FINANCE and API keys of the account; empty for anyone else."""
    allowed = _readable(info.context.actor) == account_id
    query = WebhookEndpointModel.filter(account_id=account_id if allowed else -1)
    return await paginate(query, WebhookEndpoint.of, first=first, after=after, last=last, before=before)


@strawberry.input
class WebhookEndpointCreateInput:
    url: str
    events: list[WebhookEventTypeModel]
    description: str | None = None


@strawberry.input
class WebhookEndpointUpdateInput:
    id: strawberry.ID
    url: str | None = None
    events: list[WebhookEventTypeModel] | None = None
    enabled: bool | None = None
    description: str | None = None


@strawberry.input
class WebhookEndpointDeleteInput:
    id: strawberry.ID


@strawberry.input
class WebhookEndpointRotateSecretInput:
    id: strawberry.ID


@strawberry.input
class WebhookEndpointTestInput:
    id: strawberry.ID


@strawberry.input
class WebhookDeliveryRetryInput:
    id: strawberry.ID


@strawberry.type
class WebhookEndpointCreatePayload:
    endpoint: WebhookEndpoint | None = None
    secret: str | None = strawberry.field(default=None, description="The whsec_ signing secret, shown this once.")
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class WebhookEndpointUpdatePayload:
    endpoint: WebhookEndpoint | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class WebhookEndpointDeletePayload:
    deleted_id: strawberry.ID | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class WebhookEndpointRotateSecretPayload:
    endpoint: WebhookEndpoint | None = None
    secret: str | None = strawberry.field(default=None, description="The new secret, shown this once.")
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class WebhookEndpointTestPayload:
    delivery: WebhookDelivery | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class WebhookDeliveryRetryPayload:
    delivery: WebhookDelivery | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


def _rules(info: Info) -> webhooks.UrlRules:
    return webhooks.UrlRules(resolver=_RESOLVER, allow_insecure=info.context.settings.webhooks_allow_insecure)


def _cipher(info: Info) -> SecretCipher:
    return SecretCipher(info.context.settings.secret_key)


@strawberry.type
class WebhookMutation:
    @strawberry.mutation(permission_classes=[IsAuthenticated], description="ADMIN: register a webhook endpoint.")
    async def webhook_endpoint_create(
        self, info: Info, input: WebhookEndpointCreateInput
    ) -> WebhookEndpointCreatePayload:
        try:
            created = await webhooks.create_endpoint(
                actor=actor_of(info),
                url=input.url,
                events=input.events,
                description=input.description,
                rules=_rules(info),
                cipher=_cipher(info),
            )
        except DomainError as error:
            return WebhookEndpointCreatePayload(errors=user_errors(error))
        return WebhookEndpointCreatePayload(endpoint=WebhookEndpoint.of(created.endpoint), secret=created.secret)

    @strawberry.mutation(permission_classes=[IsAuthenticated], description="ADMIN: change or enable/disable one.")
    async def webhook_endpoint_update(
        self, info: Info, input: WebhookEndpointUpdateInput
    ) -> WebhookEndpointUpdatePayload:
        try:
            endpoint = await webhooks.update_endpoint(
                actor=actor_of(info),
                endpoint_id=node_pk(input.id, WebhookEndpoint),
                rules=_rules(info),
                url=input.url,
                events=input.events,
                enabled=input.enabled,
                description=input.description,
            )
        except DomainError as error:
            return WebhookEndpointUpdatePayload(errors=user_errors(error))
        return WebhookEndpointUpdatePayload(endpoint=WebhookEndpoint.of(endpoint))

    @strawberry.mutation(permission_classes=[IsAuthenticated], description="ADMIN: remove an endpoint.")
    async def webhook_endpoint_delete(
        self, info: Info, input: WebhookEndpointDeleteInput
    ) -> WebhookEndpointDeletePayload:
        try:
            deleted = await webhooks.delete_endpoint(
                actor=actor_of(info), endpoint_id=node_pk(input.id, WebhookEndpoint)
            )
        except DomainError as error:
            return WebhookEndpointDeletePayload(errors=user_errors(error))
        return WebhookEndpointDeletePayload(deleted_id=strawberry.ID(str(input.id)) if deleted else None)

    @strawberry.mutation(
        permission_classes=[IsAuthenticated], description="ADMIN: a new secret; the old one signs too for 24 hours."
    )
    async def webhook_endpoint_rotate_secret(
        self, info: Info, input: WebhookEndpointRotateSecretInput
    ) -> WebhookEndpointRotateSecretPayload:
        try:
            rotated = await webhooks.rotate_secret(
                actor=actor_of(info), endpoint_id=node_pk(input.id, WebhookEndpoint), cipher=_cipher(info)
            )
        except DomainError as error:
            return WebhookEndpointRotateSecretPayload(errors=user_errors(error))
        return WebhookEndpointRotateSecretPayload(endpoint=WebhookEndpoint.of(rotated.endpoint), secret=rotated.secret)

    @strawberry.mutation(permission_classes=[IsAuthenticated], description="ADMIN: send a webhook.test event.")
    async def webhook_endpoint_test(self, info: Info, input: WebhookEndpointTestInput) -> WebhookEndpointTestPayload:
        try:
            delivery = await webhooks.send_test(actor=actor_of(info), endpoint_id=node_pk(input.id, WebhookEndpoint))
        except DomainError as error:
            return WebhookEndpointTestPayload(errors=user_errors(error))
        return WebhookEndpointTestPayload(delivery=WebhookDelivery.of(delivery))

    @strawberry.mutation(permission_classes=[IsAuthenticated], description="ADMIN: send a delivery again now.")
    async def webhook_delivery_retry(self, info: Info, input: WebhookDeliveryRetryInput) -> WebhookDeliveryRetryPayload:
        try:
            delivery = await webhooks.retry_delivery(
                actor=actor_of(info), delivery_id=node_pk(input.id, WebhookDelivery)
            )
        except DomainError as error:
            return WebhookDeliveryRetryPayload(errors=user_errors(error))
        return WebhookDeliveryRetryPayload(delivery=WebhookDelivery.of(delivery))
