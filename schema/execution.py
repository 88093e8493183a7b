"""The execution context: Strawberry's, with an awaitable check that remembers types; enum output by lookup.

graphql-core asks of every value a resolver returns whether it is awaitable.
Strawberry's check answers primitives (str, int, list, dict, ...) at once, but every
other value (an object of a Strawberry type, an enum member, a datetime) takes the
slow path: isinstance checks, then `hasattr(value, "__await__")`, which raises and
catches an AttributeError inside, and a dashboard returns thousands of such values
(bench/README.md, W1). Whether a value can be awaited depends
on its type only (`await` looks `__await__` up on the type), so the answer is
remembered per type; generators, whose answer depends on their code, are asked
every time, as before.

Both patches here are checked against upstream in tests/test_library_patches.py; drop them
when Strawberry remembers the awaitable answer per type and serializes enums by lookup.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import GeneratorType
from typing import Any, TypeGuard

from graphql import GraphQLSchema
from strawberry.execution import optimized_is_awaitable
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import CustomGraphQLEnumType

# Seeded with the types Strawberry's own check answers at once.
_BY_TYPE: dict[type, bool] = dict.fromkeys((type(None), bool, int, float, str, bytes, list, tuple, dict), False)
_MAX_TYPES = 10_000  # classes made at run time cannot grow it without bound


def is_awaitable(value: Any) -> TypeGuard[Awaitable[Any]]:
    try:
        return _BY_TYPE[type(value)]
    except KeyError:
        return _learn(value)


def _learn(value: Any) -> bool:
    kind = type(value)
    known = optimized_is_awaitable(value)
    if kind is not GeneratorType and len(_BY_TYPE) < _MAX_TYPES:
        _BY_TYPE[kind] = known
    return known


class GraphQLExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.is_awaitable = is_awaitable


def name_enums_by_lookup(graphql_schema: GraphQLSchema) -> None:
    """Serialize enum members by one dict lookup instead of Strawberry's scan of the values.

    Strawberry's enum type compares the member's `.value` (a property, slow) with each
    GraphQL value in turn, for each of a dashboard's status fields (bench/README.md, W1).
    The lookup gives the same names (a str enum's raw value too, as before); anything it
    does not know goes the original way, errors included.
    """
    for graphql_type in graphql_schema.type_map.values():
        if not isinstance(graphql_type, CustomGraphQLEnumType):
            continue
        members = graphql_type.wrapped_cls
        names: dict[Any, str] = {members(v.value): name for name, v in graphql_type.values.items()}
        fast = _by_lookup(names, graphql_type.coerce_output_value)
        graphql_type.coerce_output_value = fast  # type: ignore[method-assign, assignment]


def _by_lookup(names: dict[Any, str], original: Callable[[Any], str]) -> Callable[[Any], str]:
    def coerce_output_value(value: Any) -> str:
        try:
            return names[value]
        except (KeyError, TypeError):  # TypeError: an unhashable value
            return original(value)

    return coerce_output_value
