"""Typed domain errors with a stable code. No HTTP status, no GraphQL."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID = "INVALID"
    NOT_FOUND = "NOT_FOUND"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    NOT_A_PARTNER = "NOT_A_PARTNER"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    PAYMENT_DECLINED = "PAYMENT_DECLINED"
    PAYMENT_GATEWAY_ERROR = "PAYMENT_GATEWAY_ERROR"
    PAYMENT_METHOD_DISABLED = "PAYMENT_METHOD_DISABLED"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    IDEMPOTENCY_KEY_IN_PROGRESS = "IDEMPOTENCY_KEY_IN_PROGRESS"
    EMAIL_TAKEN = "EMAIL_TAKEN"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    CANCEL_WINDOW_CLOSED = "CANCEL_WINDOW_CLOSED"
    ORDER_HAS_REDEEMED_VOUCHERS = "ORDER_HAS_REDEEMED_VOUCHERS"
    ORDER_HAS_EXPIRED_VOUCHERS = "ORDER_HAS_EXPIRED_VOUCHERS"
    ORDER_ALREADY_CANCELLED = "ORDER_ALREADY_CANCELLED"
    VOUCHER_NOT_REDEEMABLE = "VOUCHER_NOT_REDEEMABLE"
    ALLOWANCE_EXCEEDED = "ALLOWANCE_EXCEEDED"
    CSR_INVALID = "CSR_INVALID"
    CSR_MISMATCH = "CSR_MISMATCH"
    REUSE_WINDOW_CLOSED = "REUSE_WINDOW_CLOSED"
    RATE_LIMITED = "RATE_LIMITED"
    # Redis or PostgreSQL is down or too slow: retry (with the same idempotency key) after retry_after_seconds.
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    ORDER_CANCELLED = "ORDER_CANCELLED"
    PDF_RENDER_IN_PROGRESS = "PDF_RENDER_IN_PROGRESS"


class DomainError(Exception):
    """An expected failure of a use case; nothing was changed."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        field: str | tuple[str, ...] | None = None,
        *,
        retry_after_seconds: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field: tuple[str, ...] | None = (field,) if isinstance(field, str) else field
        self.retry_after_seconds = retry_after_seconds  # RATE_LIMITED, SERVICE_UNAVAILABLE: when to try again


class InvalidFields(DomainError):
    """Several inputs are invalid at once: each is reported, so the client fixes them in one go."""

    def __init__(self, errors: list[DomainError]) -> None:
        super().__init__(ErrorCode.INVALID, "; ".join(e.message for e in errors))
        self.errors = errors


def unavailable(message: str, retry_after_seconds: int) -> DomainError:
    """A dependency is down or slow: nothing is known to have changed, and trying again is safe."""
    return DomainError(ErrorCode.SERVICE_UNAVAILABLE, message, retry_after_seconds=retry_after_seconds)


def invalid(field: str, message: str) -> DomainError:
    return DomainError(ErrorCode.INVALID, message, field)


def not_found(field: str | None = None, message: str = "Not found.") -> DomainError:
    return DomainError(ErrorCode.NOT_FOUND, message, field)
