"""The append-only ledger: the only record of how a balance moved.

A database trigger (migration 0002) refuses UPDATE and DELETE on this table.
"""

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

from models.enums import LedgerEntryKind

if TYPE_CHECKING:
    from models.accounts import Account, ApiKey, User
    from models.orders import VoucherOrder


class LedgerEntry(Model):
    account_id: int
    order_id: int | None
    actor_user_id: int | None
    actor_api_key_id: int | None
    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation["Account"] = fields.ForeignKeyField(
        "vouchsafe.Account", related_name="ledger_entries", on_delete=fields.RESTRICT
    )
    kind = fields.CharEnumField(LedgerEntryKind, max_length=12)
    amount = fields.BigIntField()
    balance_after = fields.BigIntField()
    memo = fields.CharField(max_length=500, default="")
    order: fields.ForeignKeyNullableRelation["VoucherOrder"] = fields.ForeignKeyField(
        "vouchsafe.VoucherOrder", related_name="ledger_entries", null=True, on_delete=fields.RESTRICT
    )
    actor_user: fields.ForeignKeyNullableRelation["User"] = fields.ForeignKeyField(
        "vouchsafe.User", related_name="ledger_entries", null=True, on_delete=fields.RESTRICT
    )
    actor_api_key: fields.ForeignKeyNullableRelation["ApiKey"] = fields.ForeignKeyField(
        "vouchsafe.ApiKey", related_name="ledger_entries", null=True, on_delete=fields.RESTRICT
    )
    gateway_reference = fields.CharField(max_length=100, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "ledger_entry"
        indexes = [("account_id", "id")]
