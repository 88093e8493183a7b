"""Webhook endpoints of an account: ADMIN creates, changes, deletes, rotates and tests them.

FINANCE users and API keys read endpoints and deliveries (schema.webhooks); MEMBERs
see none. Another tenant's endpoint or delivery is NOT_FOUND, as a missing one is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from tortoise.transactions import in_transaction

from infra import clock
from models import Account, Role, WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint, WebhookEventType
from services import webhook_events
from services.actors import Actor
from services.errors import invalid, not_found
from services.validation import clean_text
from services.webhook_delivery import fail_pending
from services.webhook_secrets import SecretCipher, new_secret
from services.webhook_urls import Resolver, check

MAX_ENDPOINTS = 16
DESCRIPTION_MAX = 500
# The secret before a rotation keeps signing beside the new one, so receivers can switch over.
ROTATION_OVERLAP = timedelta(hours=24)


@dataclass(frozen=True)
class UrlRules:
    """How an endpoint's URL is checked: the resolver, and whether http and local addresses pass."""

    resolver: Resolver
    allow_insecure: bool


@dataclass(frozen=True)
class WithSecret:
    endpoint: WebhookEndpoint
    secret: str  # shown this once


def can_read(actor: Actor) -> bool:
    return actor.account_id is not None and actor.has_role(Role.ADMIN, Role.FINANCE)


def _events(events: Sequence[WebhookEventType]) -> list[str]:
    chosen = sorted({WebhookEventType(e).value for e in events})
    if not chosen:
        raise invalid("events", "Subscribe to at least one event type.")
    return chosen


def _description(value: str | None) -> str:
    return clean_text(value or "", field="description", max_length=DESCRIPTION_MAX, required=False)


async def _owned(actor: Actor, endpoint_id: int) -> WebhookEndpoint:
    actor.require_role(Role.ADMIN)
    endpoint = await WebhookEndpoint.filter(id=endpoint_id, account_id=actor.require_account()).first()
    if endpoint is None:
        raise not_found("id", "No such webhook endpoint.")
    return endpoint


async def create_endpoint(
    *,
    actor: Actor,
    url: str,
    events: Sequence[WebhookEventType],
    description: str | None,
    rules: UrlRules,
    cipher: SecretCipher,
) -> WithSecret:
    """ADMIN registers a URL for some event types; its signing secret is returned this once."""
    actor.require_role(Role.ADMIN)
    account_id = actor.require_account()
    checked = await check(url, rules.resolver, allow_insecure=rules.allow_insecure)
    chosen, text = _events(events), _description(description)
    secret = new_secret()
    now = clock.now()
    async with in_transaction() as conn:
        # The account row lock makes the count and the insert one step (PostgreSQL; SQLite is serial).
        await Account.filter(id=account_id).using_db(conn).select_for_update().get()
        if await WebhookEndpoint.filter(account_id=account_id).using_db(conn).count() >= MAX_ENDPOINTS:
            raise invalid("url", f"An account has at most {MAX_ENDPOINTS} webhook endpoints.")
        endpoint = await WebhookEndpoint.create(
            account_id=account_id,
            url=checked.text,
            events=chosen,
            description=text,
            secret_ciphertext=b"",
            created_at=now,
            updated_at=now,
            using_db=conn,
        )
        # Sealed once the id is known: it is the ciphertext's associated data.
        endpoint.secret_ciphertext = cipher.seal(secret, endpoint.id)
        await endpoint.save(update_fields=["secret_ciphertext"], using_db=conn)
    return WithSecret(endpoint, secret)


async def update_endpoint(
    *,
    actor: Actor,
    endpoint_id: int,
    rules: UrlRules,
    url: str | None = None,
    events: Sequence[WebhookEventType] | None = None,
    enabled: bool | None = None,
    description: str | None = None,
) -> WebhookEndpoint:
    """ADMIN changes an endpoint; disabling fails its waiting deliveries, enabling clears its failure streak."""
    endpoint = await _owned(actor, endpoint_id)
    values: dict[str, object] = {"updated_at": clock.now()}
    if url is not None:
        values["url"] = (await check(url, rules.resolver, allow_insecure=rules.allow_insecure)).text
    if events is not None:
        values["events"] = _events(events)
    if description is not None:
        values["description"] = _description(description)
    if enabled is not None:
        values["enabled"] = enabled
        if enabled:
            values.update(failing_since=None, disabled_reason=None)
        else:
            values["disabled_reason"] = "Disabled by a user."
    async with in_transaction() as conn:
        await WebhookEndpoint.filter(id=endpoint.id).using_db(conn).update(**values)
        if enabled is False:
            await fail_pending(conn, endpoint.id)
    return await WebhookEndpoint.get(id=endpoint.id)


async def delete_endpoint(*, actor: Actor, endpoint_id: int) -> int:
    """ADMIN removes an endpoint and its deliveries; nothing more is sent to it."""
    endpoint = await _owned(actor, endpoint_id)
    await WebhookEndpoint.filter(id=endpoint.id).delete()
    return int(endpoint.id)


async def rotate_secret(*, actor: Actor, endpoint_id: int, cipher: SecretCipher) -> WithSecret:
    """ADMIN gets a new secret; the current one signs beside it for ROTATION_OVERLAP."""
    endpoint = await _owned(actor, endpoint_id)
    secret = new_secret()
    now = clock.now()
    async with in_transaction() as conn:
        # Read again under the lock: two rotations at once must not both keep the same "previous".
        current = await WebhookEndpoint.filter(id=endpoint.id).using_db(conn).select_for_update().get()
        await (
            WebhookEndpoint.filter(id=endpoint.id)
            .using_db(conn)
            .update(
                secret_ciphertext=cipher.seal(secret, endpoint.id),
                previous_secret_ciphertext=current.secret_ciphertext,
                previous_secret_expires_at=now + ROTATION_OVERLAP,
                updated_at=now,
            )
        )
    return WithSecret(await WebhookEndpoint.get(id=endpoint.id), secret)


async def send_test(*, actor: Actor, endpoint_id: int) -> WebhookDelivery:
    """ADMIN sends a `webhook.test` event to one enabled endpoint, whatever it subscribes to."""
    endpoint = await _owned(actor, endpoint_id)
    if not endpoint.enabled:
        raise invalid("id", "Enable the endpoint before testing it.")
    now = clock.now()
    data = {
        "account": {"id": webhook_events.gid("Account", endpoint.account_id)},
        "endpoint": {"id": webhook_events.gid("WebhookEndpoint", endpoint.id)},
        "message": "A test event from vouchsafe.",
    }
    return await WebhookDelivery.create(
        endpoint_id=endpoint.id,
        account_id=endpoint.account_id,
        event_id=webhook_events.new_event_id(),
        event_type=webhook_events.TEST,
        payload=webhook_events.body(webhook_events.TEST, data, now),
        status=WebhookDeliveryStatus.PENDING,
        next_attempt_at=now,
        created_at=now,
    )


async def retry_delivery(*, actor: Actor, delivery_id: int) -> WebhookDelivery:
    """ADMIN sends a delivery again now, same event id, with a fresh schedule of attempts."""
    actor.require_role(Role.ADMIN)
    delivery = await WebhookDelivery.filter(id=delivery_id, account_id=actor.require_account()).first()
    if delivery is None:
        raise not_found("id", "No such webhook delivery.")
    if not await WebhookEndpoint.filter(id=delivery.endpoint_id, enabled=True).exists():
        raise invalid("id", "Enable the endpoint before retrying its deliveries.")
    now = clock.now()
    await WebhookDelivery.filter(id=delivery.id).update(
        status=WebhookDeliveryStatus.PENDING, attempts=0, next_attempt_at=now
    )
    return await WebhookDelivery.get(id=delivery.id)
