"""Types shared by every domain module."""

from __future__ import annotations

from decimal import Decimal

import strawberry
from strawberry import relay

from services.money import to_decimal


@strawberry.type(description="An exact amount of money in a currency.")
class Money:
    amount: Decimal
    currency_code: str

    @classmethod
    def of(cls, minor: int, currency: str) -> Money:
        return cls(amount=to_decimal(minor, currency), currency_code=currency)


def node_pk(global_id: relay.GlobalID, node_type: type) -> int:
    """The primary key behind a global id of the expected type; -1 (found nowhere) otherwise.

    A wrong type or a malformed id takes the same path as a missing row: NOT_FOUND.
    """
    if global_id.type_name != node_type.__name__ or not global_id.node_id.isdigit():
        return -1
    return int(global_id.node_id)
