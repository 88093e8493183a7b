"""The extension runner that inspects each class's hooks once (schema.runner) runs them as Strawberry's does.

Extensions with every kind of hook Strawberry accepts (generators, async generators,
functions, coroutine functions, none) run through Strawberry's runner and through ours;
what each hook saw and did, in order, and the answers, errors included, are the same,
also when a hook fails. The schema's own extensions are covered by every other test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import strawberry
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext

from schema import schema as dev_schema
from schema.runner import ExtensionsRunner

events: list[str] = []


class Generators(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        events.append("operation in")
        yield
        events.append(f"operation out {self.execution_context.result is not None}")

    def on_validate(self) -> Iterator[None]:
        events.append("validate in")
        yield
        events.append("validate out")

    def on_parse(self) -> Iterator[None]:
        events.append("parse in")
        yield
        events.append("parse out")

    async def on_execute(self) -> AsyncIterator[None]:
        events.append("execute in (async)")
        yield
        events.append("execute out (async)")


class Callables(SchemaExtension):
    def on_validate(self) -> None:  # type: ignore[override]  # a plain function: Strawberry accepts it
        events.append("validate (function)")

    async def on_execute(self) -> None:  # type: ignore[override]  # a coroutine function, likewise
        events.append("execute (coroutine)")


class Failing(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        events.append("failing in")
        yield
        raise RuntimeError("an extension failed after execution")


class NotCallable(SchemaExtension):
    on_validate = 3  # type: ignore[assignment]  # Strawberry refuses it with a ValueError

    def __repr__(self) -> str:
        return "NotCallable()"  # the error names the extension: the same name in both runs


@strawberry.type
class Query:
    @strawberry.field
    def hello(self, name: str = "world") -> str:
        events.append("resolver")
        return f"hello {name}"


class Remembering(strawberry.Schema):
    def create_extensions_runner(
        self, execution_context: ExecutionContext, extensions: list[SchemaExtension]
    ) -> ExtensionsRunner:
        return ExtensionsRunner(execution_context=execution_context, extensions=extensions)


async def run(kind: type[strawberry.Schema], extensions: list[Any], document: str) -> tuple[list[str], Any]:
    events.clear()
    try:
        result = await kind(query=Query, extensions=extensions).execute(document)
        answer: Any = (result.data, [str(error) for error in result.errors or []])
    except Exception as exc:
        answer = (type(exc).__name__, str(exc))
    return list(events), answer


@pytest.mark.parametrize(
    "extensions",
    [[Generators, Callables], [Callables, Generators], [Generators, Failing, Callables], [NotCallable], []],
    ids=["generators first", "callables first", "one fails", "not callable", "none"],
)
@pytest.mark.parametrize("document", ["{ hello }", '{ hello(name: "you") }', "{ nope }", "{"])
async def test_the_same_hooks_in_the_same_order_with_the_same_answers(extensions: list[Any], document: str) -> None:
    theirs = await run(strawberry.Schema, extensions, document)
    ours = await run(Remembering, extensions, document)
    assert ours == theirs
    if extensions and extensions != [NotCallable] and document == "{ hello }":
        assert "resolver" in ours[0]
    # A second run takes the remembered hooks: still the same.
    assert await run(Remembering, extensions, document) == theirs


def test_the_schema_runs_its_extensions_with_the_remembering_runner() -> None:
    runner = dev_schema.create_extensions_runner(None, [])  # type: ignore[arg-type]
    assert isinstance(runner, ExtensionsRunner)
