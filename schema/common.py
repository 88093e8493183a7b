"""Types shared by every domain module."""

from __future__ import annotations

import inspect
from base64 import b64encode
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NewType, TypeVar

import strawberry
from strawberry import relay
from strawberry.utils.await_maybe import AwaitableOrValue

from services.money import to_decimal


def _decimal_text(value: Any) -> str:
    # Any JSON scalar is taken as text: the service checks the notation and answers
    # a bad amount ("1e3", "NaN", "10.005") with INVALID on its field, not a GraphQL error.
    return str(value)


DecimalString = NewType("DecimalString", str)

# Registered in the schema's scalar_map (schema/__init__.py).
DECIMAL_SCALAR = strawberry.scalar(
    name="Decimal",
    description='An exact decimal number written as a string, e.g. "125.00". Never a float.',
    serialize=str,
    parse_value=_decimal_text,
)


@strawberry.type(description="An exact amount of money in a currency.")
class Money:
    amount: DecimalString
    currency_code: str

    @classmethod
    def of(cls, minor: int, currency: str) -> Money:
        return cls(amount=DecimalString(str(to_decimal(minor, currency))), currency_code=currency)


def node_id_field() -> Any:
    """Node's `id` as a plain attribute (set it with `global_id` in `__post_init__`).

    relay.Node's own `id` is a resolver: an Info object, a GlobalID and a base64 encoding
    at every read, and a dashboard reads a thousand voucher ids (bench/README.md, W1).
    The same field (name, type, description: the SDL does not change), read as an
    attribute, costs what any plain field does; `node(id:)` still finds the object by
    its NodeID.
    """
    return strawberry.field(
        name="id", graphql_type=strawberry.ID, description="The Globally Unique ID of this object", default=""
    )


def global_id(type_name: str, pk: int) -> str:
    """The id relay.Node would answer for the object of this type and primary key (its to_base64,
    without the checks of its type argument: a third of the cost)."""
    return b64encode(f"{type_name}:{pk}".encode()).decode()


def node_pk(global_id: relay.GlobalID, node_type: type) -> int:
    """The primary key behind a global id of the expected type; -1 (found nowhere) otherwise.

    A wrong type or a malformed id takes the same path as a missing row: NOT_FOUND.
    """
    if global_id.type_name != node_type.__name__ or not global_id.node_id.isdigit():
        return -1
    return int(global_id.node_id)


T = TypeVar("T")
U = TypeVar("U")


def then(value: AwaitableOrValue[T], convert: Callable[[T], U]) -> AwaitableOrValue[U]:
    """`convert(value)`, awaiting the value first only when it must be: a field whose data was read
    ahead answers at once, without a coroutine (which costs graphql-core a task), else it waits."""
    if inspect.isawaitable(value):
        return _converted(value, convert)
    return convert(value)


async def _converted(value: Awaitable[T], convert: Callable[[T], U]) -> U:
    return convert(await value)


def pks(node_ids: Iterable[str]) -> list[int]:
    """The integer primary keys among node ids; anything else matches no row."""
    return [int(i) for i in node_ids if str(i).isdigit()]


def ordered(rows: Iterable[Any], node_ids: Iterable[str], convert: Callable[[Any], T]) -> list[T | None]:
    """Rows converted and put in the order of the ids asked for, None where missing."""
    by_id = {str(row.id): convert(row) for row in rows}
    return [by_id.get(str(i)) for i in node_ids]
