"""Voucher orders, their lines, their vouchers and their history."""

from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint
from tortoise.models import Model

from models.enums import OrderEventKind, PaymentMethod, PdfStatus, VoucherOrderStatus, VoucherStatus

if TYPE_CHECKING:
    from models.accounts import Account, ApiKey, User
    from models.catalogue import Product


class VoucherOrder(Model):
    account_id: int
    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation["Account"] = fields.ForeignKeyField(
        "vouchsafe.Account", related_name="voucher_orders", on_delete=fields.RESTRICT
    )
    number = fields.CharField(max_length=32, unique=True)
    customer_name = fields.CharField(max_length=200, null=True)
    notes = fields.TextField(null=True)
    status = fields.CharEnumField(VoucherOrderStatus, max_length=10, default=VoucherOrderStatus.ACTIVE)
    payment_method = fields.CharEnumField(PaymentMethod, max_length=20)
    total = fields.BigIntField()
    currency = fields.CharField(max_length=3)
    voucher_count = fields.IntField()
    gateway_charge_reference = fields.CharField(max_length=100, null=True)
    gateway_refund_reference = fields.CharField(max_length=100, null=True)
    placed_by_user: fields.ForeignKeyNullableRelation["User"] = fields.ForeignKeyField(
        "vouchsafe.User", related_name="voucher_orders", null=True, on_delete=fields.RESTRICT
    )
    placed_by_api_key: fields.ForeignKeyNullableRelation["ApiKey"] = fields.ForeignKeyField(
        "vouchsafe.ApiKey", related_name="voucher_orders", null=True, on_delete=fields.RESTRICT
    )
    created_at = fields.DatetimeField()
    cancelled_at = fields.DatetimeField(null=True)
    pdf_status = fields.CharEnumField(PdfStatus, max_length=10, default=PdfStatus.PENDING)
    pdf_error = fields.CharField(max_length=500, null=True)
    pdf_generated_at = fields.DatetimeField(null=True)
    expiry_reminder_sent_at = fields.DatetimeField(null=True)

    class Meta:
        table = "voucher_order"
        indexes = [("account_id", "created_at", "id")]
        constraints = [
            CheckConstraint(check="total >= 0", name="voucher_order_total_non_negative"),
            CheckConstraint(check="voucher_count > 0", name="voucher_order_has_vouchers"),
        ]


class VoucherOrderLine(Model):
    """A line as priced when the order was placed, a snapshot, never re-read from the catalogue."""

    order_id: int
    product_id: int

    id = fields.BigIntField(primary_key=True)
    order: fields.ForeignKeyRelation[VoucherOrder] = fields.ForeignKeyField(
        "vouchsafe.VoucherOrder", related_name="lines", on_delete=fields.RESTRICT
    )
    position = fields.IntField()
    product: fields.ForeignKeyRelation["Product"] = fields.ForeignKeyField(
        "vouchsafe.Product", related_name="order_lines", on_delete=fields.RESTRICT
    )
    product_code = fields.CharField(max_length=40)
    product_name = fields.CharField(max_length=100)
    quantity = fields.IntField()
    validity_years = fields.IntField()
    fqdns = fields.IntField()
    wildcards = fields.IntField()
    unit_price = fields.BigIntField()
    line_total = fields.BigIntField()

    class Meta:
        table = "voucher_order_line"
        unique_together = (("order", "position"),)
        constraints = [
            CheckConstraint(check="quantity >= 1 AND quantity <= 10000", name="voucher_order_line_quantity"),
            CheckConstraint(check="unit_price >= 0 AND line_total >= 0", name="voucher_order_line_prices"),
        ]


class Voucher(Model):
    """One prepaid code. The code itself is stored only encrypted, and found by its HMAC."""

    account_id: int
    order_id: int
    line_id: int

    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation["Account"] = fields.ForeignKeyField(
        "vouchsafe.Account", related_name="vouchers", on_delete=fields.RESTRICT
    )
    order: fields.ForeignKeyRelation[VoucherOrder] = fields.ForeignKeyField(
        "vouchsafe.VoucherOrder", related_name="vouchers", on_delete=fields.RESTRICT
    )
    line: fields.ForeignKeyRelation[VoucherOrderLine] = fields.ForeignKeyField(
        "vouchsafe.VoucherOrderLine", related_name="vouchers", on_delete=fields.RESTRICT
    )
    code_digest = fields.BinaryField()
    code_ciphertext = fields.BinaryField()
    # The last group of the code, shown in masked lists without decrypting.
    code_hint = fields.CharField(max_length=5)
    status = fields.CharEnumField(VoucherStatus, max_length=12, default=VoucherStatus.VALID_UNUSED)
    expires_at = fields.DatetimeField()
    created_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "voucher"
        unique_together = (("code_digest",),)
        indexes = [("order_id", "id"), ("status", "expires_at")]


class OrderEvent(Model):
    """An order's history: who did what, when. Never holds a full code."""

    order_id: int
    actor_user_id: int | None
    actor_api_key_id: int | None

    id = fields.BigIntField(primary_key=True)
    order: fields.ForeignKeyRelation[VoucherOrder] = fields.ForeignKeyField(
        "vouchsafe.VoucherOrder", related_name="events", on_delete=fields.RESTRICT
    )
    kind = fields.CharEnumField(OrderEventKind, max_length=20)
    actor_user: fields.ForeignKeyNullableRelation["User"] = fields.ForeignKeyField(
        "vouchsafe.User", related_name="order_events", null=True, on_delete=fields.RESTRICT
    )
    actor_api_key: fields.ForeignKeyNullableRelation["ApiKey"] = fields.ForeignKeyField(
        "vouchsafe.ApiKey", related_name="order_events", null=True, on_delete=fields.RESTRICT
    )
    data: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "order_event"
        indexes = [("order_id", "id")]
