"""Money: integer minor units inside, exact decimal strings at the edge. Never floats."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from services.errors import invalid

# ISO 4217 minor-unit exponents of the currencies accounts may hold.
EXPONENTS = {"USD": 2, "EUR": 2, "GBP": 2, "CHF": 2, "JPY": 0}


def exponent(currency: str) -> int:
    return EXPONENTS.get(currency, 2)


def to_decimal(minor: int, currency: str) -> Decimal:
    """125_00 USD -> Decimal('125.00')."""
    return Decimal(minor).scaleb(-exponent(currency))


def to_minor(amount: Decimal | str, currency: str, *, field: str) -> int:
    """An exact amount in minor units; INVALID for NaN, infinities or more decimals than the currency has."""
    try:
        value = Decimal(amount) if isinstance(amount, str) else amount
    except InvalidOperation as exc:
        raise invalid(field, "Enter an amount such as 125.00.") from exc
    if not value.is_finite():
        raise invalid(field, "Enter an amount such as 125.00.")
    scaled = value.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise invalid(field, f"{currency} amounts have at most {exponent(currency)} decimals.")
    return int(scaled)
