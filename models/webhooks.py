"""Webhook endpoints of an account, the deliveries of events to them, and expiry tallies."""

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

from models.enums import WebhookDeliveryStatus

if TYPE_CHECKING:
    from models.accounts import Account


class WebhookEndpoint(Model):
    """A partner's URL that hears of the events it subscribes to."""

    account_id: int

    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation["Account"] = fields.ForeignKeyField(
        "vouchsafe.Account", related_name="webhook_endpoints", on_delete=fields.CASCADE
    )
    url = fields.CharField(max_length=2048)
    # WebhookEventType values; a JSON array (jsonb on PostgreSQL, matched with @> there).
    events: fields.JSONField[list[str]] = fields.JSONField(default=list)
    enabled = fields.BooleanField(default=True)
    description = fields.CharField(max_length=500, default="")
    # AES-GCM under a key derived from VOUCHSAFE_SECRET_KEY, the endpoint id as associated data.
    secret_ciphertext = fields.BinaryField()
    # The secret before the last rotation keeps signing beside the new one until it expires.
    previous_secret_ciphertext = fields.BinaryField(null=True)
    previous_secret_expires_at = fields.DatetimeField(null=True)
    # Since when every attempt has failed (None after any success): 5 days of it disable the endpoint.
    failing_since = fields.DatetimeField(null=True)
    disabled_reason = fields.CharField(max_length=200, null=True)
    created_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()

    class Meta:
        table = "webhook_endpoint"
        indexes = [("account_id", "id")]


class WebhookDelivery(Model):
    """One event for one endpoint: the exact body sent, and how its attempts went."""

    endpoint_id: int
    account_id: int

    id = fields.BigIntField(primary_key=True)
    endpoint: fields.ForeignKeyRelation[WebhookEndpoint] = fields.ForeignKeyField(
        "vouchsafe.WebhookEndpoint", related_name="deliveries", on_delete=fields.CASCADE
    )
    account: fields.ForeignKeyRelation["Account"] = fields.ForeignKeyField(
        "vouchsafe.Account", related_name="webhook_deliveries", on_delete=fields.CASCADE
    )
    # The webhook-id header: one per event, the same for every endpoint and every attempt.
    event_id = fields.CharField(max_length=40)
    event_type = fields.CharField(max_length=40)
    payload = fields.TextField()
    status = fields.CharEnumField(WebhookDeliveryStatus, max_length=10, default=WebhookDeliveryStatus.PENDING)
    attempts = fields.IntField(default=0)
    last_status_code = fields.IntField(null=True)
    last_response_body = fields.TextField(null=True)
    last_error = fields.CharField(max_length=500, null=True)
    next_attempt_at = fields.DatetimeField(null=True)
    # A worker sending it holds it until then; a killed worker's lease lapses and another sends it.
    locked_until = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()
    delivered_at = fields.DatetimeField(null=True)

    class Meta:
        table = "webhook_delivery"
        unique_together = (("endpoint", "event_id"),)
        indexes = [("status", "next_attempt_at"), ("endpoint_id", "id")]


class WebhookExpiryTally(Model):
    """What one expiry sweep expired of an order: one event per order per sweep."""

    # The sweep expires vouchers range by range, a transaction each, and an order's vouchers
    # may span ranges: tallies commit with each range and become one event per order when
    # the sweep ends (or when the next one starts, if this one died).

    id = fields.BigIntField(primary_key=True)
    sweep_id = fields.CharField(max_length=40)
    order_id = fields.BigIntField()
    account_id = fields.BigIntField()
    count = fields.IntField()
    created_at = fields.DatetimeField()

    class Meta:
        table = "webhook_expiry_tally"
        indexes = [("sweep_id", "order_id")]
