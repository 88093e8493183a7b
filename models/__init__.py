"""Tortoise models: fields, relations, constraints; nothing else.

Everything here imports only tortoise and the standard library.
"""

from models.accounts import Account, ApiKey, FinanceSettings, Session, User
from models.catalogue import Product
from models.documents import PdfChunk, PdfPart, PdfRender
from models.enums import (
    ApiKeyChannel,
    CertificateRequestStatus,
    IdempotencyStatus,
    LedgerEntryKind,
    OrderEventKind,
    OutboxStatus,
    PaymentMethod,
    PdfStatus,
    Role,
    VoucherOrderStatus,
    VoucherStatus,
    WebhookDeliveryStatus,
    WebhookEventType,
)
from models.ledger import LedgerEntry
from models.orders import OrderEvent, Voucher, VoucherOrder, VoucherOrderLine
from models.outbox import IdempotencyRecord, OutboxMessage
from models.redemption import CertificateRequest
from models.trusted_documents import TrustedDocument
from models.webhooks import WebhookDelivery, WebhookEndpoint, WebhookExpiryTally

APP_LABEL = "vouchsafe"
MODEL_MODULES = [
    "models.accounts",
    "models.catalogue",
    "models.documents",
    "models.ledger",
    "models.orders",
    "models.outbox",
    "models.redemption",
    "models.trusted_documents",
    "models.webhooks",
]
# The ORM's configuration of this app (infra.database opens and migrates what it is given).
ORM_APPS = {APP_LABEL: {"models": MODEL_MODULES, "migrations": "migrations"}}

__all__ = [
    "APP_LABEL",
    "MODEL_MODULES",
    "ORM_APPS",
    "Account",
    "ApiKey",
    "ApiKeyChannel",
    "CertificateRequest",
    "CertificateRequestStatus",
    "FinanceSettings",
    "IdempotencyRecord",
    "IdempotencyStatus",
    "LedgerEntry",
    "LedgerEntryKind",
    "OrderEvent",
    "OrderEventKind",
    "OutboxMessage",
    "OutboxStatus",
    "PaymentMethod",
    "PdfChunk",
    "PdfPart",
    "PdfRender",
    "PdfStatus",
    "Product",
    "Role",
    "Session",
    "TrustedDocument",
    "User",
    "Voucher",
    "VoucherOrder",
    "VoucherOrderLine",
    "VoucherOrderStatus",
    "VoucherStatus",
    "WebhookDelivery",
    "WebhookDeliveryStatus",
    "WebhookEndpoint",
    "WebhookEventType",
    "WebhookExpiryTally",
]
