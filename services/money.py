"""Money: integer minor units inside, exact decimal strings at the edge. Never floats."""

from __future__ import annotations

import re
from decimal import Decimal

from services.errors import invalid

# Plain decimal notation only: no exponents ("1e3"), no NaN or infinities, no separators.
_PLAIN = re.compile(r"^[+-]?\d{1,18}(\.\d{1,18})?$")

# ISO 4217 minor-unit exponents of the currencies accounts may hold.
EXPONENTS = {"USD": 2, "EUR": 2, "GBP": 2, "CHF": 2, "JPY": 0}


def exponent(currency: str) -> int:
    return EXPONENTS.get(currency, 2)


def to_decimal(minor: int, currency: str) -> Decimal:
    """125_00 USD -> Decimal('125.00')."""
    return Decimal(minor).scaleb(-exponent(currency))


def to_minor(amount: Decimal | str, currency: str, *, field: str) -> int:
    """An exact amount in minor units; INVALID unless plain decimal notation within the currency's decimals."""
    text = str(amount).strip()
    if not _PLAIN.match(text):
        raise invalid(field, "Enter an amount such as 125.00.")
    scaled = Decimal(text).scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise invalid(field, f"{currency} amounts have at most {exponent(currency)} decimals.")
    return int(scaled)
