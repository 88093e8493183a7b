"""Arguments converted by the converters made once (schema.arguments) are Strawberry's own conversion.

For every argument of every field of the schema, values of its GraphQL type as graphql-core
hands them to a resolver (coerced: nulls, absent optional fields, lists, enum members,
nested inputs, IDs that are not global ids) are converted by Strawberry's
`convert_arguments` and by ours: the same Python values, or the same error.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import pytest
import strawberry
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strawberry import relay
from strawberry.schema import schema_converter
from strawberry.types.arguments import convert_arguments as strawberry_convert_arguments
from strawberry.types.field import StrawberryField

from schema import arguments, build_schema
from schema import schema as dev_schema

LEAVES: dict[str, st.SearchStrategy[Any]] = {
    "String": st.text(max_size=4),
    "ID": st.sampled_from(["", "1", "Q2VydGlmaWNhdGVSZXF1ZXN0OjE=", "not base64"]),
    "GlobalID": st.sampled_from(["Q2VydGlmaWNhdGVSZXF1ZXN0OjE=", "not base64", "Tm8gY29sb24="]),
    "Int": st.integers(-3, 3),
    "Float": st.floats(allow_nan=False),
    "Boolean": st.booleans(),
}


def values_of(kind: GraphQLInputType, depth: int = 0) -> st.SearchStrategy[Any]:
    if isinstance(kind, GraphQLNonNull):
        return present(kind.of_type, depth)
    return st.none() | present(kind, depth)


def present(kind: GraphQLInputType, depth: int) -> st.SearchStrategy[Any]:
    if isinstance(kind, GraphQLList):
        return st.just([]) if depth > 3 else st.lists(values_of(kind.of_type, depth + 1), max_size=3)
    if isinstance(kind, GraphQLEnumType):
        return st.sampled_from([value.value for value in kind.values.values()])
    if isinstance(kind, GraphQLScalarType):
        # A custom scalar's parsed value passes through unchanged: any value shows it does.
        return LEAVES.get(kind.name, st.sampled_from(["2026-01-01", "125.00", object()]))
    assert isinstance(kind, GraphQLInputObjectType)
    required = {n: values_of(f.type, depth + 1) for n, f in kind.fields.items() if isinstance(f.type, GraphQLNonNull)}
    optional = {n: values_of(f.type, depth + 1) for n, f in kind.fields.items() if n not in required}
    return st.fixed_dictionaries(required, optional=optional)


@strawberry.enum
class Colour(Enum):
    RED = "red"


@strawberry.input
class Located:
    name: str


# An input that builds itself (as integrations do) is told where it is: the path must be Strawberry's.
Located.__strawberry_definition__.from_input = lambda cls, value, context: (cls.__name__, context.path)  # type: ignore[attr-defined]


@strawberry.input
class Corner:
    """The kinds of input the schema does not use today, each of which Strawberry converts its own way."""

    maybe: strawberry.Maybe[str]
    maybe_null: strawberry.Maybe[str | None]
    node: relay.GlobalID | None = None
    nodes: list[relay.GlobalID] | None = None
    no_default: str | None
    colours: list[Colour | None] | None = None
    children: list[Corner] | None = None
    located: list[Located] | None = None


@strawberry.type
class CornerQuery:
    @strawberry.field
    def corner(self, value: Corner, extra: relay.GlobalID | None = None) -> int:
        return 0


CORNERS = strawberry.Schema(query=CornerQuery)


def fields_with_arguments(schema: strawberry.Schema) -> list[tuple[str, strawberry.Schema, Any, StrawberryField]]:
    found = []
    for type_name, kind in schema._schema.type_map.items():  # noqa: SLF001  # graphql-core's schema
        if not isinstance(kind, GraphQLObjectType) or type_name.startswith("__"):
            continue
        for name, field in kind.fields.items():
            definition = field.extensions.get("strawberry-definition")
            if field.args and isinstance(definition, StrawberryField) and definition.arguments:
                found.append((f"{type_name}.{name}", schema, field, definition))
    return found


FIELDS = fields_with_arguments(dev_schema) + fields_with_arguments(CORNERS)


def converted(
    convert: Any, value: dict[str, Any], schema: strawberry.Schema, definition: StrawberryField
) -> tuple[str, Any]:
    try:
        registry = schema.schema_converter.scalar_registry
        return "value", convert(value, definition.arguments, registry, schema.config, None)
    except Exception as exc:
        return "error", (type(exc), str(exc))


def test_the_schema_has_arguments_of_every_kind_to_compare() -> None:
    names = {name for name, _, _, _ in FIELDS}
    assert {
        "Mutation.voucherRedeem",
        "Mutation.voucherOrderCreate",
        "Query.voucherOrders",
        "Query.node",
        "Query.nodes",
        "CornerQuery.corner",
    } <= names
    assert len(FIELDS) >= 30


@pytest.mark.parametrize(("name", "schema", "field", "definition"), FIELDS, ids=[name for name, _, _, _ in FIELDS])
@settings(max_examples=40, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_same_python_values_or_errors_as_strawberry(
    name: str, schema: strawberry.Schema, field: Any, definition: StrawberryField, data: Any
) -> None:
    strategy = st.fixed_dictionaries(
        {n: values_of(a.type) for n, a in field.args.items() if isinstance(a.type, GraphQLNonNull)},
        optional={n: values_of(a.type) for n, a in field.args.items() if not isinstance(a.type, GraphQLNonNull)},
    )
    value = data.draw(strategy)
    theirs = converted(strawberry_convert_arguments, value, schema, definition)
    ours = converted(arguments.convert_arguments, value, schema, definition)
    assert ours == theirs


def test_lists_are_copied_as_strawberry_copies_them() -> None:
    """graphql-core gives every request that omits a list the same default object."""
    _, schema, _, definition = next(f for f in FIELDS if f[0] == "Mutation.voucherRedeem")
    shared = ["a.example"]
    value = {"input": {"code": "x", "commonName": "a.example", "additionalFqdns": shared}}
    _, kwargs = converted(arguments.convert_arguments, value, schema, definition)
    assert kwargs["input"].additional_fqdns == shared
    assert kwargs["input"].additional_fqdns is not shared


def test_resolvers_convert_with_ours_once_a_schema_is_built() -> None:
    build_schema(production=True)
    assert schema_converter.convert_arguments is arguments.convert_arguments  # type: ignore[attr-defined]
