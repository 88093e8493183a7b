"""Webhooks: endpoints (secrets encrypted), deliveries (the webhook outbox), expiry tallies."""

from orjson import loads
from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from models.enums import WebhookDeliveryStatus


class Migration(migrations.Migration):
    dependencies = [("vouchsafe", "0004_pdf_documents")]

    initial = False

    operations = [
        ops.CreateModel(
            name="WebhookEndpoint",
            fields=[
                ("id", fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "account",
                    fields.ForeignKeyField(
                        "vouchsafe.Account",
                        source_field="account_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="webhook_endpoints",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("url", fields.CharField(max_length=2048)),
                ("events", fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ("enabled", fields.BooleanField(default=True)),
                ("description", fields.CharField(default="", max_length=500)),
                ("secret_ciphertext", fields.BinaryField()),
                ("previous_secret_ciphertext", fields.BinaryField(null=True)),
                ("previous_secret_expires_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("failing_since", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("disabled_reason", fields.CharField(null=True, max_length=200)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("updated_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "webhook_endpoint",
                "app": "vouchsafe",
                "indexes": [Index(fields=["account_id", "id"])],
                "pk_attr": "id",
                "table_description": "A partner's URL that hears of the events it subscribes to.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="WebhookDelivery",
            fields=[
                ("id", fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "endpoint",
                    fields.ForeignKeyField(
                        "vouchsafe.WebhookEndpoint",
                        source_field="endpoint_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="deliveries",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "account",
                    fields.ForeignKeyField(
                        "vouchsafe.Account",
                        source_field="account_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="webhook_deliveries",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("event_id", fields.CharField(max_length=40)),
                ("event_type", fields.CharField(max_length=40)),
                ("payload", fields.TextField(unique=False)),
                (
                    "status",
                    fields.CharEnumField(
                        default=WebhookDeliveryStatus.PENDING,
                        description="PENDING: PENDING\nSUCCEEDED: SUCCEEDED\nFAILED: FAILED",
                        enum_type=WebhookDeliveryStatus,
                        max_length=10,
                    ),
                ),
                ("attempts", fields.IntField(default=0)),
                ("last_status_code", fields.IntField(null=True)),
                ("last_response_body", fields.TextField(null=True, unique=False)),
                ("last_error", fields.CharField(null=True, max_length=500)),
                ("next_attempt_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("locked_until", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("delivered_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "webhook_delivery",
                "app": "vouchsafe",
                "unique_together": (("endpoint", "event_id"),),
                "indexes": [Index(fields=["status", "next_attempt_at"]), Index(fields=["endpoint_id", "id"])],
                "pk_attr": "id",
                "table_description": "One event for one endpoint: the exact body sent, and how its attempts went.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="WebhookExpiryTally",
            fields=[
                ("id", fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ("sweep_id", fields.CharField(max_length=40)),
                ("order_id", fields.BigIntField()),
                ("account_id", fields.BigIntField()),
                ("count", fields.IntField()),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "webhook_expiry_tally",
                "app": "vouchsafe",
                "indexes": [Index(fields=["sweep_id", "order_id"])],
                "pk_attr": "id",
                "table_description": "What one expiry sweep expired of an order: one event per order per sweep.",
            },
            bases=["Model"],
        ),
    ]
