"""Enumerations stored in the database (values are what the columns hold)."""

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "ADMIN"
    FINANCE = "FINANCE"
    MEMBER = "MEMBER"


class ApiKeyChannel(StrEnum):
    API = "API"
    AZURE_KEY_VAULT = "AZURE_KEY_VAULT"


class PaymentMethod(StrEnum):
    ACCOUNT_BALANCE = "ACCOUNT_BALANCE"
    CREDIT_CARD = "CREDIT_CARD"


class LedgerEntryKind(StrEnum):
    DEPOSIT = "DEPOSIT"
    PURCHASE = "PURCHASE"
    REFUND = "REFUND"
    ADJUSTMENT = "ADJUSTMENT"


class VoucherStatus(StrEnum):
    VALID_UNUSED = "VALID_UNUSED"
    VALID_USED = "VALID_USED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"


class VoucherOrderStatus(StrEnum):
    ACTIVE = "ACTIVE"
    CANCELLED = "CANCELLED"


class PdfStatus(StrEnum):
    PENDING = "PENDING"
    READY = "READY"
    FAILED = "FAILED"


class CertificateRequestStatus(StrEnum):
    SUBMITTED = "SUBMITTED"
    ISSUED = "ISSUED"
    CANCELLED = "CANCELLED"
    REVOKED = "REVOKED"


class OrderEventKind(StrEnum):
    PLACED = "PLACED"
    PAID = "PAID"
    CODES_REVEALED = "CODES_REVEALED"
    CSV_DOWNLOADED = "CSV_DOWNLOADED"
    PDF_READY = "PDF_READY"
    PDF_FAILED = "PDF_FAILED"
    PDF_DOWNLOADED = "PDF_DOWNLOADED"
    PDF_RENDER_REQUESTED = "PDF_RENDER_REQUESTED"  # 20 characters: the column's length
    VOUCHER_REDEEMED = "VOUCHER_REDEEMED"
    VOUCHER_RELEASED = "VOUCHER_RELEASED"
    CANCELLED = "CANCELLED"
    REFUNDED = "REFUNDED"
    EXPIRED = "EXPIRED"


class OutboxStatus(StrEnum):
    PENDING = "PENDING"
    ENQUEUED = "ENQUEUED"
    DONE = "DONE"
    FAILED = "FAILED"


class IdempotencyStatus(StrEnum):
    IN_PROGRESS = "IN_PROGRESS"
    DONE = "DONE"


class WebhookEventType(StrEnum):
    """What an endpoint subscribes to; the payload's `type` is services.webhook_events.WIRE_NAMES."""

    VOUCHER_ORDER_PLACED = "VOUCHER_ORDER_PLACED"
    VOUCHER_ORDER_PDF_READY = "VOUCHER_ORDER_PDF_READY"
    VOUCHER_ORDER_CANCELLED = "VOUCHER_ORDER_CANCELLED"
    VOUCHER_REDEEMED = "VOUCHER_REDEEMED"
    VOUCHER_RELEASED = "VOUCHER_RELEASED"
    VOUCHERS_EXPIRED = "VOUCHERS_EXPIRED"
    DEPOSIT_SUCCEEDED = "DEPOSIT_SUCCEEDED"
    BALANCE_LOW = "BALANCE_LOW"


class WebhookDeliveryStatus(StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
