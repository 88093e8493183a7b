"""Certificate requests made by redeeming a voucher."""

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

from models.enums import CertificateRequestStatus

if TYPE_CHECKING:
    from models.accounts import Account, User
    from models.orders import Voucher


class CertificateRequest(Model):
    voucher_id: int
    account_id: int
    user_id: int
    id = fields.BigIntField(primary_key=True)
    voucher: fields.ForeignKeyRelation["Voucher"] = fields.ForeignKeyField(
        "vouchsafe.Voucher", related_name="certificate_requests", on_delete=fields.RESTRICT
    )
    account: fields.ForeignKeyRelation["Account"] = fields.ForeignKeyField(
        "vouchsafe.Account", related_name="certificate_requests", on_delete=fields.RESTRICT
    )
    user: fields.ForeignKeyRelation["User"] = fields.ForeignKeyField(
        "vouchsafe.User", related_name="certificate_requests", on_delete=fields.RESTRICT
    )
    common_name = fields.CharField(max_length=253)
    additional_fqdns: fields.JSONField[list[str]] = fields.JSONField(default=list)
    wildcards: fields.JSONField[list[str]] = fields.JSONField(default=list)
    csr = fields.TextField(null=True)
    status = fields.CharEnumField(CertificateRequestStatus, max_length=10, default=CertificateRequestStatus.SUBMITTED)
    created_at = fields.DatetimeField()
    issued_at = fields.DatetimeField(null=True)
    ended_at = fields.DatetimeField(null=True)

    class Meta:
        table = "certificate_request"
        indexes = [("account_id", "id")]
        # I3 (at most one live request per voucher) is a partial unique index,
        # created in migration 0002: Tortoise cannot express it on SQLite.
