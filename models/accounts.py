"""Tenants, their people and their credentials."""

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint
from tortoise.models import Model

from models.enums import ApiKeyChannel, PaymentMethod, Role


class Account(Model):
    """A tenant. The balance moves only through the ledger (see LedgerEntry)."""

    id = fields.BigIntField(primary_key=True)
    name = fields.CharField(max_length=200)
    currency = fields.CharField(max_length=3, default="USD")
    locale = fields.CharField(max_length=2, default="en")
    is_partner = fields.BooleanField(default=False)
    balance = fields.BigIntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "account"
        constraints = [CheckConstraint(check="balance >= 0", name="account_balance_non_negative")]


class FinanceSettings(Model):
    """Per-account payment settings, one row per account."""

    account_id: int

    account: fields.OneToOneRelation[Account] = fields.OneToOneField(
        "vouchsafe.Account", related_name="finance_settings", primary_key=True, on_delete=fields.CASCADE
    )
    bill_to_balance_enabled = fields.BooleanField(default=False)
    credit_card_enabled = fields.BooleanField(default=True)
    default_payment_method = fields.CharEnumField(PaymentMethod, max_length=20, default=PaymentMethod.CREDIT_CARD)
    low_balance_threshold = fields.BigIntField(null=True)
    # True while a crossing below the threshold would send the notification.
    low_balance_armed = fields.BooleanField(default=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "finance_settings"
        constraints = [
            CheckConstraint(check="bill_to_balance_enabled OR credit_card_enabled", name="finance_settings_one_method"),
            CheckConstraint(
                check="low_balance_threshold IS NULL OR low_balance_threshold >= 0",
                name="finance_settings_threshold_non_negative",
            ),
            CheckConstraint(
                check=(
                    "(default_payment_method = 'CREDIT_CARD' AND credit_card_enabled)"
                    " OR (default_payment_method = 'ACCOUNT_BALANCE' AND bill_to_balance_enabled)"
                ),
                name="finance_settings_default_enabled",
            ),
        ]


class User(Model):
    """A person who signs in. Staff belong to no account."""

    account_id: int | None

    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyNullableRelation[Account] = fields.ForeignKeyField(
        "vouchsafe.Account", related_name="users", null=True, on_delete=fields.RESTRICT
    )
    email = fields.CharField(max_length=254, unique=True)
    password_hash = fields.CharField(max_length=255)
    role = fields.CharEnumField(Role, max_length=10, null=True)
    is_staff = fields.BooleanField(default=False)
    is_active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "app_user"
        constraints = [
            CheckConstraint(
                check=(
                    "(is_staff AND account_id IS NULL)"
                    " OR (NOT is_staff AND account_id IS NOT NULL AND role IS NOT NULL)"
                ),
                name="app_user_staff_or_member",
            )
        ]


class Session(Model):
    """A sign-in. Only the SHA-256 of the token is stored."""

    user_id: int

    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "vouchsafe.User", related_name="sessions", on_delete=fields.CASCADE
    )
    token_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "user_session"


class ApiKey(Model):
    """An account's machine credential. Only the SHA-256 of the secret is stored."""

    account_id: int

    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "vouchsafe.Account", related_name="api_keys", on_delete=fields.RESTRICT
    )
    name = fields.CharField(max_length=100)
    channel = fields.CharEnumField(ApiKeyChannel, max_length=20, default=ApiKeyChannel.API)
    prefix = fields.CharField(max_length=16)
    key_hash = fields.CharField(max_length=64, unique=True)
    created_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "vouchsafe.User", related_name="api_keys_created", null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_key"
