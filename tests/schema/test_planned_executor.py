"""The planned executor answers as graphql-core's own, on the values its fast steps do not expect.

The differential test (test_prepared_differential.py) runs the real schema on well-formed
data, where the fast steps almost always apply. Here a small schema's objects hold what
they should not: None in non-null fields, attributes that raise, values a scalar refuses,
objects `is_type_of` refuses, awaitables, tuples and generators where lists are declared,
errors from resolvers beside them. Each document runs through graphql-core's executor
and the planned one (twice: the second run uses the stored plan), and the answers (data,
errors, their messages, locations and paths, in order) must be the same bytes.
"""

from __future__ import annotations

import asyncio
import enum
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import strawberry
from graphql import execute, parse

from schema.execution import GraphQLExecutionContext
from schema.planned import GENERIC, DocumentPlan, PlannedExecutor, instances_only, plannable, planned_execute


@strawberry.enum
class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.type
class Leaf:
    name: str
    size: int
    maybe: str | None
    colour: Colour
    at: datetime


@strawberry.type
class Checked:
    label: str

    @classmethod
    @instances_only
    def is_type_of(cls, obj: object, info: object) -> bool:
        return isinstance(obj, cls)


@strawberry.type
class Box:
    leaf: Leaf
    maybe_leaf: Leaf | None
    leaves: list[Leaf]
    maybe_leaves: list[Leaf | None] | None
    checked: Checked
    checked_list: list[Checked]

    @strawberry.field
    async def slow(self, fail: bool = False) -> str:
        await asyncio.sleep(0)
        if fail:
            raise ValueError("slow failed")
        return "slow"


class Raising:
    """Reads like a Leaf, but one attribute raises."""

    name = "raising"
    size = 1
    maybe = None
    colour = Colour.RED
    at = datetime(2026, 1, 1, tzinfo=UTC)

    @property
    def maybe_raise(self) -> str:
        raise RuntimeError("property raised")


def leaf(**changes: Any) -> Any:
    values: dict[str, Any] = {
        "name": "n",
        "size": 3,
        "maybe": None,
        "colour": Colour.BLUE,
        "at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    return Leaf(**(values | changes))


class RaisingName(Raising):
    @property
    def name(self) -> str:  # type: ignore[override]
        raise RuntimeError("name raised")


async def _later(value: Any) -> Any:
    return value


def box_of(kind: str) -> dict[str, Any]:
    """The named source: a Box-shaped object holding something unexpected (made when asked: some hold coroutines)."""
    good: dict[str, Any] = {
        "leaf": leaf(),
        "maybe_leaf": None,
        "leaves": [leaf(), leaf(name="second")],
        "maybe_leaves": [leaf(), None],
        "checked": Checked(label="c"),
        "checked_list": [Checked(label="a"), Checked(label="b")],
    }
    kinds: dict[str, Any] = {
        "good": lambda: good,
        "null_non_null_leaf": lambda: good | {"leaf": leaf(name=None)},
        "bad_int": lambda: good | {"leaf": leaf(size="not a number")},
        "huge_int": lambda: good | {"leaf": leaf(size=2**40)},
        "bad_enum": lambda: good | {"leaf": leaf(colour="green")},
        "raising_attribute": lambda: good | {"leaf": RaisingName()},
        "null_object": lambda: good | {"leaf": None},
        "refused_object": lambda: good | {"checked": leaf()},
        "refused_item": lambda: good | {"checked_list": [Checked(label="a"), "not checked"]},
        "null_item": lambda: good | {"leaves": [leaf(), None]},
        "tuple_list": lambda: good | {"leaves": (leaf(), leaf(name="t"))},
        "generator_list": lambda: good | {"leaves": (x for x in [leaf()])},
        "not_a_list": lambda: good | {"leaves": leaf()},
        "null_list": lambda: good | {"leaves": None},
        "bad_item_field": lambda: good | {"leaves": [leaf(), leaf(size="x")], "maybe_leaves": [leaf(size="y"), None]},
        "awaitable_leaf": lambda: good | {"leaf": leaf(name=_later("awaited"))},
        "awaitable_object": lambda: good | {"maybe_leaf": _later(leaf())},
        "exception_value": lambda: good | {"leaf": leaf(name=ValueError("returned, not raised"))},
    }
    return kinds[kind]()


KINDS = [
    "good", "null_non_null_leaf", "bad_int", "huge_int", "bad_enum", "raising_attribute", "null_object",
    "refused_object", "refused_item", "null_item", "tuple_list", "generator_list", "not_a_list", "null_list",
    "bad_item_field", "awaitable_leaf", "awaitable_object", "exception_value",
]  # fmt: skip


@strawberry.type
class Query:
    @strawberry.field
    def box(self, kind: str) -> Box:
        return _Source(box_of(kind))  # type: ignore[return-value]  # duck-typed on purpose

    @strawberry.field
    def maybe_box(self, kind: str) -> Box | None:
        return _Source(box_of(kind))  # type: ignore[return-value]


class _Source:
    """An object whose attributes are the given values (a Box that may break its own types)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


SCHEMA = strawberry.Schema(query=Query)
GRAPHQL_SCHEMA = SCHEMA._schema  # noqa: SLF001  # graphql-core's schema, to call both executors directly

SELECTION = """
  leaf { name size maybe colour at }
  alias: maybeLeaf { name }
  leaves { name size ... on Leaf { colour } }
  maybeLeaves { size name }
  checked { label __typename }
  checkedList { label }
  slow
  failing: slow(fail: true)
"""
DOCUMENTS = [
    f"query Q($kind: String!) {{ box(kind: $kind) {{ {SELECTION} }} }}",
    f'query Q($kind: String!) {{ maybeBox(kind: $kind) {{ {SELECTION} }} other: maybeBox(kind: "good") {{ slow }} }}',
    "query Q($kind: String!) { maybeBox(kind: $kind) { ...F leaf @include(if: true) { size } } } "
    "fragment F on Box { leaf { name } leaves { name } maybeLeaf { size } }",
]


async def _run(document: str, kind: str, plan: DocumentPlan | None) -> bytes:
    parsed = parse(document)
    kwargs: dict[str, Any] = {"variable_values": {"kind": kind}}
    if plan is None:
        result = execute(GRAPHQL_SCHEMA, parsed, executor_class=GraphQLExecutionContext, **kwargs)
    else:
        result = planned_execute(plan)(GRAPHQL_SCHEMA, parsed, **kwargs)
    if asyncio.iscoroutine(result):
        result = await result
    return orjson.dumps(result.formatted)


@pytest.mark.parametrize("document", DOCUMENTS)
@pytest.mark.parametrize("kind", KINDS)
async def test_planned_answers_are_the_generic_answers(document: str, kind: str) -> None:
    generic = await _run(document, kind, None)
    plan = DocumentPlan()
    assert await _run(document, kind, plan) == generic
    assert await _run(document, kind, plan) == generic  # from the stored plan
    assert plan.steps, "the planned executor ran its plan"


def test_plain_fields_are_planned_and_resolvers_are_not() -> None:
    plan = DocumentPlan()
    asyncio.run(_run(DOCUMENTS[0], "good", plan))
    kinds = {step.name: step.kind for _, steps in plan.steps.values() for step in steps}
    assert kinds["name"] != GENERIC
    assert kinds["leaves"] != GENERIC
    assert kinds["checked"] != GENERIC
    assert kinds["slow"] == GENERIC
    assert kinds["failing"] == GENERIC
    assert kinds["__typename"] == GENERIC


def test_documents_whose_fields_depend_on_variables_are_not_planned() -> None:
    assert plannable(parse('{ box(kind: "good") { leaf @include(if: true) { name } } }'))
    assert not plannable(parse('query Q($x: Boolean!) { box(kind: "good") { leaf @skip(if: $x) { name } } }'))


def test_middleware_turns_the_plan_off() -> None:
    def passthrough(next_: Any, root: Any, info: Any, **args: Any) -> Any:
        return next_(root, info, **args)

    plan = DocumentPlan()
    result = planned_execute(plan)(
        GRAPHQL_SCHEMA, parse('{ maybeBox(kind: "good") { leaf { name } } }'), middleware=[passthrough]
    )
    assert not asyncio.iscoroutine(result)
    assert result.data == {"maybeBox": {"leaf": {"name": "n"}}}
    assert not plan.steps
    assert issubclass(PlannedExecutor, GraphQLExecutionContext)
