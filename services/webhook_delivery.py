"""Sending webhook deliveries: due ones claimed with a lease, signed, sent, retried, at least once.

The delivery rows are the webhooks' outbox: written with the change (services.webhook_events),
read here by the workers, which need neither Redis nor the job queue to send them. A
worker claims a due delivery by compare-and-set (a lease of LEASE, the attempt counted);
a worker killed mid-attempt leaves the lease to lapse and another one sends it again,
with the same webhook-id, so receivers deduplicate (a worker that stops hands its cut-off
attempts back at once). Non-2xx answers, timeouts and connection errors are retried on
RETRY_SCHEDULE (about a day); an endpoint whose every attempt has failed for DISABLE_AFTER
is disabled and its account's admins e-mailed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import F, Q
from tortoise.transactions import in_transaction

from infra import clock
from infra.sql import Sql
from models import Account, Role, User, WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint
from services import outbox
from services.mail import SEND_EMAIL, email_payload
from services.webhook_http import Answer, AttemptError, Sender
from services.webhook_secrets import SecretCipher, headers
from services.webhook_urls import Resolver, UnsafeAddress, checked_address, parse

log = logging.getLogger(__name__)

# After the 1st, 2nd, ... failed attempt; the Standard Webhooks spec's own schedule: 8 attempts over ~27.6 h.
RETRY_SCHEDULE = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
MAX_ATTEMPTS = len(RETRY_SCHEDULE) + 1
DISABLE_AFTER = timedelta(days=5)
# Longer than an attempt can take (10 s of HTTP, 5 s of DNS) with room for its database writes.
LEASE = timedelta(seconds=30)
ENDPOINT_DISABLED = "webhook_endpoint_disabled"
DISABLED_ERROR = "The endpoint was disabled."


@dataclass(frozen=True)
class DeliveryConfig:
    cipher: SecretCipher
    sender: Sender
    resolver: Resolver
    allow_insecure: bool
    public_url: str


@dataclass(frozen=True)
class Due:
    id: int
    endpoint_id: int
    failing: bool  # the endpoint's recent attempts all failed


@dataclass(frozen=True)
class Outcome:
    """How one attempt went; easy to count (delivered, retried, failed for good)."""

    delivery_id: int
    endpoint_id: int
    account_id: int
    delivered: bool
    final: bool
    status_code: int | None
    error: str | None


async def due(*, limit: int, per_endpoint: int, exclude: set[int]) -> list[Due]:
    """Deliveries to send now: at most `per_endpoint` of each endpoint, healthy endpoints' first."""
    conn = connections.get("default")
    sql = Sql(conn)
    now = clock.now()
    # Placeholders are numbered as they are made (SQLite's are positional): in the text's order.
    due_by, free_by = sql.param(now), sql.param(now)
    skip = f"AND d.endpoint_id NOT IN ({sql.ids(sorted(exclude))})" if exclude else ""
    query = f"""
        SELECT id, endpoint_id, failing FROM (
            SELECT d.id, d.endpoint_id, CASE WHEN e.failing_since IS NULL THEN 0 ELSE 1 END AS failing,
                   ROW_NUMBER() OVER (PARTITION BY d.endpoint_id ORDER BY d.next_attempt_at, d.id) AS n
            FROM webhook_delivery d JOIN webhook_endpoint e ON e.id = d.endpoint_id
            WHERE d.status = 'PENDING' AND e.enabled AND d.next_attempt_at <= {due_by}
              AND (d.locked_until IS NULL OR d.locked_until < {free_by}) {skip}
        ) AS due WHERE n <= {sql.param(per_endpoint)} ORDER BY failing, id LIMIT {sql.param(limit)}
    """
    _, rows = await conn.execute_query(query, sql.values)
    return [Due(int(r["id"]), int(r["endpoint_id"]), bool(r["failing"])) for r in rows]


async def claim(delivery_id: int, *, lease: timedelta = LEASE) -> datetime | None:
    """Take a due delivery for one attempt (compare-and-set): the lease's end, None when another worker has it."""
    now = clock.now()
    until = now + lease
    taken = await WebhookDelivery.filter(
        Q(locked_until=None) | Q(locked_until__lt=now), id=delivery_id, status=WebhookDeliveryStatus.PENDING
    ).update(locked_until=until, attempts=F("attempts") + 1)
    return until if taken else None


async def release(delivery_id: int, lease_end: datetime) -> bool:
    """Hand back a claim whose attempt was cut off (a stopping worker): due again now, not when its lease ends.

    Compare-and-set on the claim's own lease end: a settled delivery, or one whose lease
    lapsed and another worker took, is left as it is. The cut-off attempt stays counted.
    """
    return bool(
        await WebhookDelivery.filter(
            id=delivery_id, status=WebhookDeliveryStatus.PENDING, locked_until=lease_end
        ).update(locked_until=None)
    )


def _wall_clock() -> int:
    # webhook-timestamp is when the request leaves, by the real clock the receiver compares it
    # with (its library refuses more than 5 minutes apart), not infra.clock's scheduling time.
    return int(time.time())


def _signing_secrets(endpoint: WebhookEndpoint, cipher: SecretCipher, now: datetime) -> list[str]:
    current = [cipher.open(endpoint.secret_ciphertext, endpoint.id)]
    previous = endpoint.previous_secret_ciphertext
    if previous is not None and endpoint.previous_secret_expires_at and endpoint.previous_secret_expires_at > now:
        try:
            current.append(cipher.open(previous, endpoint.id))
        except InvalidTag:  # sealed under a secret key since replaced: the rotation that followed is what counts
            log.warning(
                "webhook endpoint %s: its previous secret cannot be opened, signing with the new one", endpoint.id
            )
    return current


async def attempt(delivery_id: int, config: DeliveryConfig) -> Outcome | None:
    """One attempt of a claimed delivery, recorded; None when it is gone."""
    delivery = await WebhookDelivery.filter(id=delivery_id).first()
    endpoint = await WebhookEndpoint.filter(id=delivery.endpoint_id).first() if delivery else None
    if delivery is None or endpoint is None:
        return None
    if not endpoint.enabled:
        await _settle(delivery, endpoint, answer=None, error=DISABLED_ERROR, final=True)
        return Outcome(delivery.id, endpoint.id, delivery.account_id, False, True, None, DISABLED_ERROR)
    body = delivery.payload.encode()
    answer: Answer | None = None
    error: str | None = None
    try:
        url = parse(endpoint.url, allow_insecure=config.allow_insecure)
        address = await checked_address(url, config.resolver, allow_insecure=config.allow_insecure)
        signed = headers(
            _signing_secrets(endpoint, config.cipher, clock.now()),
            message_id=delivery.event_id,
            timestamp=_wall_clock(),
            body=body,
        )
        answer = await config.sender.post(url, address, signed, body)
    except (UnsafeAddress, AttemptError) as exc:
        error = str(exc)
    except Exception as exc:  # a URL saved before a rule tightened, a bug: recorded and retried, never lost
        log.exception("webhook delivery %s failed unexpectedly", delivery.id)
        error = f"Delivery failed: {type(exc).__name__}."
    delivered = answer is not None and 200 <= answer.status < 300
    if answer is not None and not delivered:
        error = f"The endpoint answered HTTP {answer.status}."
    final = delivered or delivery.attempts >= MAX_ATTEMPTS
    outcome = Outcome(
        delivery.id, endpoint.id, delivery.account_id, delivered, final, answer.status if answer else None, error
    )
    await _settle(
        delivery, endpoint, answer=answer, error=error, final=final, delivered=delivered, public_url=config.public_url
    )
    log.info(
        "webhook delivery %s (%s) to endpoint %s, attempt %s: %s",
        delivery.id,
        delivery.event_type,
        endpoint.id,
        delivery.attempts,
        "delivered" if delivered else f"{'failed' if final else 'retry'} ({error})",
    )
    return outcome


async def _settle(
    delivery: WebhookDelivery,
    endpoint: WebhookEndpoint,
    *,
    answer: Answer | None,
    error: str | None,
    final: bool,
    delivered: bool = False,
    public_url: str | None = None,
) -> None:
    """Record an attempt; a failure counts against the endpoint (when public_url is given)."""
    now = clock.now()
    values: dict[str, object] = {
        "locked_until": None,
        "last_status_code": answer.status if answer else None,
        "last_response_body": answer.body if answer else None,
        "last_error": error[:500] if error else None,
    }
    if delivered:
        values.update(status=WebhookDeliveryStatus.SUCCEEDED, delivered_at=now, next_attempt_at=None)
    elif final:
        values.update(status=WebhookDeliveryStatus.FAILED, next_attempt_at=None)
    else:
        values["next_attempt_at"] = now + RETRY_SCHEDULE[max(0, delivery.attempts - 1)]
    disabled = False
    async with in_transaction() as conn:
        pending = WebhookDelivery.filter(id=delivery.id, status=WebhookDeliveryStatus.PENDING)
        await pending.using_db(conn).update(**values)
        if delivered:
            await WebhookEndpoint.filter(id=endpoint.id).using_db(conn).update(failing_since=None)
        elif public_url is not None:
            await WebhookEndpoint.filter(id=endpoint.id, failing_since=None).using_db(conn).update(failing_since=now)
            since = endpoint.failing_since or now
            if now - since >= DISABLE_AFTER:
                disabled = await _disable(conn, endpoint, since, error or "", public_url)
    if disabled:
        outbox.notify()  # the admins' e-mail


async def _disable(
    conn: BaseDBAsyncClient, endpoint: WebhookEndpoint, since: datetime, last_error: str, public_url: str
) -> bool:
    """Disable an endpoint that failed for DISABLE_AFTER, once; its pending deliveries fail; admins hear of it."""
    changed = (
        await WebhookEndpoint.filter(id=endpoint.id, enabled=True)
        .using_db(conn)
        .update(enabled=False, disabled_reason="Every delivery failed for 5 days.", updated_at=clock.now())
    )
    if not changed:
        return False
    await fail_pending(conn, endpoint.id)
    account = await Account.get(id=endpoint.account_id, using_db=conn)
    admins = (
        await User.filter(account_id=account.id, role=Role.ADMIN, is_active=True)
        .using_db(conn)
        .order_by("id")
        .values_list("email", flat=True)
    )
    log.warning("webhook endpoint %s disabled after failing since %s", endpoint.id, since.isoformat())
    if not admins:
        return True
    await outbox.add(
        SEND_EMAIL,
        email_payload(
            ENDPOINT_DISABLED,
            to=[str(a) for a in admins],
            locale=account.locale,
            context={
                "account_name": account.name,
                "url": endpoint.url,
                "failing_since": f"{since:%Y-%m-%d %H:%M} UTC",
                "last_error": last_error,
                "public_url": public_url,
            },
        ),
        using_db=conn,
    )
    return True


async def fail_pending(conn: BaseDBAsyncClient, endpoint_id: int) -> int:
    """The deliveries still waiting for a disabled endpoint fail, visibly (and can be retried)."""
    return await (
        WebhookDelivery.filter(endpoint_id=endpoint_id, status=WebhookDeliveryStatus.PENDING)
        .using_db(conn)
        .update(status=WebhookDeliveryStatus.FAILED, next_attempt_at=None, locked_until=None, last_error=DISABLED_ERROR)
    )
