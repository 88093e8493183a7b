"""Types shared by every domain module."""

from __future__ import annotations

import base64
import binascii
import inspect
from base64 import b64encode
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NewType, TypeVar

import strawberry
from graphql import GraphQLError
from strawberry.utils.await_maybe import AwaitableOrValue

from services.money import to_decimal

# Longer than any amount the ledger can hold, short enough that parsing it costs nothing.
MAX_DECIMAL_LENGTH = 40


def _decimal_text(value: Any) -> str:
    """Money comes as a string; a JSON number or a GraphQL int/float literal is refused, never rounded.

    The service checks the notation and answers a bad amount ("1e3", "NaN", "10.005")
    with INVALID on its field; a number is the client's type error, refused here.
    """
    if not isinstance(value, str):
        raise GraphQLError(f'A Decimal is written as a string, such as "125.00", never as a number: got {value!r}.')
    if len(value) > MAX_DECIMAL_LENGTH:
        raise GraphQLError(f"A Decimal has at most {MAX_DECIMAL_LENGTH} characters.")
    return value


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


# A primary key is a BIGINT: 1 to 2^63 - 1, at most 19 digits. Our ids are under 60 characters.
MAX_PK = 2**63 - 1
MAX_GLOBAL_ID_LENGTH = 200


def parse_global_id(value: str) -> tuple[str, str] | None:
    """The type name and node id inside a global id; None for anything that is not one."""
    if len(value) > MAX_GLOBAL_ID_LENGTH:
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (ValueError, binascii.Error):  # UnicodeDecodeError is a ValueError
        return None
    type_name, colon, node_id = decoded.partition(":")
    return (type_name, node_id) if colon else None


def pk_of(node_id: object) -> int:
    """The primary key a node id names; -1 (found nowhere) for text that is not one, or out of range."""
    text = str(node_id)
    if not (0 < len(text) <= 19 and text.isascii() and text.isdigit()):
        return -1
    pk = int(text)
    return pk if 0 < pk <= MAX_PK else -1


def node_pk(global_id: str, node_type: type) -> int:
    """The primary key behind a global id of the expected type; -1 (found nowhere) otherwise.

    A wrong type, a malformed id (bad base64, no colon, 5,000 digits) or a number out of the
    keys' range takes the same path as a missing row: NOT_FOUND, never a database error.
    """
    parsed = parse_global_id(global_id)
    if parsed is None or parsed[0] != node_type.__name__:
        return -1
    return pk_of(parsed[1])


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
    """The primary keys among node ids; anything else matches no row."""
    return [pk for pk in map(pk_of, node_ids) if pk > 0]


def ordered(rows: Iterable[Any], node_ids: Iterable[str], convert: Callable[[Any], T]) -> list[T | None]:
    """Rows converted and put in the order of the ids asked for, None where missing."""
    by_id = {str(row.id): convert(row) for row in rows}
    return [by_id.get(str(i)) for i in node_ids]
