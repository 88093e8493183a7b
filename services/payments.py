"""The payment gateway port, and its sandbox adapter in the manner of Stripe's test mode.

No card data ever reaches vouchsafe: the client sends a token from the gateway's
own form, and only the gateway's charge and refund references are stored.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Protocol

from services.errors import DomainError, ErrorCode


@dataclass(frozen=True)
class Charge:
    reference: str
    amount: int
    currency: str


@dataclass(frozen=True)
class Refund:
    reference: str
    charge_reference: str
    amount: int


class PaymentGateway(Protocol):
    async def charge(
        self, *, amount: int, currency: str, token: str, idempotency_key: str, description: str
    ) -> Charge: ...

    async def refund(self, *, charge_reference: str, amount: int, idempotency_key: str) -> Refund: ...


def declined() -> DomainError:
    return DomainError(ErrorCode.PAYMENT_DECLINED, "The card was declined.", "card_token")


def gateway_error() -> DomainError:
    return DomainError(
        ErrorCode.PAYMENT_GATEWAY_ERROR, "The payment provider is not reachable. Nothing was charged; try again."
    )


class SandboxGateway:
    """Test-mode tokens: tok_visa and tok_mastercard succeed, tok_chargeDeclined is declined,
    tok_gatewayError fails as an outage would. A repeated idempotency key returns the first
    result, as a real gateway does (kept in this process)."""

    SUCCEED = frozenset({"tok_visa", "tok_mastercard"})

    def __init__(self) -> None:
        self._charges: dict[str, Charge] = {}
        self._refunds: dict[str, Refund] = {}
        self.refunded: dict[str, int] = {}

    async def charge(self, *, amount: int, currency: str, token: str, idempotency_key: str, description: str) -> Charge:
        if idempotency_key in self._charges:
            return self._charges[idempotency_key]
        if token == "tok_gatewayError":
            raise gateway_error()
        if token not in self.SUCCEED:
            raise declined()
        if amount <= 0:
            raise DomainError(ErrorCode.INVALID, "Amount must be positive.", "amount")
        charge = Charge(reference=f"ch_sandbox_{secrets.token_hex(8)}", amount=amount, currency=currency)
        self._charges[idempotency_key] = charge
        return charge

    async def refund(self, *, charge_reference: str, amount: int, idempotency_key: str) -> Refund:
        if idempotency_key in self._refunds:
            return self._refunds[idempotency_key]
        if not charge_reference.startswith("ch_sandbox_"):
            raise DomainError(ErrorCode.NOT_FOUND, "Unknown charge.")
        refund = Refund(
            reference=f"re_sandbox_{secrets.token_hex(8)}", charge_reference=charge_reference, amount=amount
        )
        self._refunds[idempotency_key] = refund
        self.refunded[charge_reference] = self.refunded.get(charge_reference, 0) + amount
        return refund


def gateway_for(name: str) -> PaymentGateway:
    """The adapter a setting names; a real gateway is added here, services stay as they are."""
    if name == "sandbox":
        return SandboxGateway()
    raise ValueError(f"unknown payment gateway {name!r}")
