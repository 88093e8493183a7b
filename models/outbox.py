"""Work to do after a commit, written in the same transaction as its cause."""

from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

from models.enums import IdempotencyStatus, OutboxStatus

if TYPE_CHECKING:
    from models.accounts import Account


class OutboxMessage(Model):
    id = fields.BigIntField(primary_key=True)
    task = fields.CharField(max_length=50)
    payload: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)
    status = fields.CharEnumField(OutboxStatus, max_length=10, default=OutboxStatus.PENDING)
    attempts = fields.IntField(default=0)
    last_error = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    enqueued_at = fields.DatetimeField(null=True)
    # A worker running the message holds it until then; a crashed worker's lease
    # lapses and another delivery may take it (arq delivers at least once).
    locked_until = fields.DatetimeField(null=True)
    done_at = fields.DatetimeField(null=True)
    # The W3C traceparent of the request that wrote the row, when traces are on: its job links to it.
    trace_context = fields.CharField(max_length=64, null=True)

    class Meta:
        table = "outbox_message"
        indexes = [("status", "id")]


class IdempotencyRecord(Model):
    """The first result of a money-moving request, replayed for its key."""

    account_id: int

    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation["Account"] = fields.ForeignKeyField(
        "vouchsafe.Account", related_name="idempotency_records", on_delete=fields.CASCADE
    )
    key = fields.CharField(max_length=255)
    operation = fields.CharField(max_length=50)
    request_hash = fields.CharField(max_length=64)
    status = fields.CharEnumField(IdempotencyStatus, max_length=12, default=IdempotencyStatus.IN_PROGRESS)
    response: fields.JSONField[dict[str, Any] | None] = fields.JSONField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    # While IN_PROGRESS, the request holding the key; a crashed request's lease lapses
    # and a retry with the same key resumes it (the gateway call is idempotent too).
    locked_until = fields.DatetimeField(null=True)
    expires_at = fields.DatetimeField()

    class Meta:
        table = "idempotency_record"
        unique_together = (("account", "key"),)
        indexes = [("expires_at",)]
