"""The execution tweaks: the awaitable check (remembered per type, generators asked each time), enum output."""

from __future__ import annotations

import types
from collections.abc import Generator
from datetime import UTC, datetime
from typing import Any

import pytest
from graphql import GraphQLError
from strawberry.schema.schema_converter import CustomGraphQLEnumType

from models import VoucherStatus
from schema import build_schema
from schema.execution import is_awaitable


class Awaitable:
    def __await__(self) -> Generator[Any, None, int]:
        yield
        return 1


class Plain:
    pass


async def coroutine() -> int:
    return 1


def generator() -> Generator[int, None, None]:
    yield 1


@types.coroutine
def generator_coroutine() -> Generator[None, None, int]:
    yield
    return 1


class TestIsAwaitable:
    def test_answers_as_before_and_again_from_memory(self) -> None:
        for _ in range(2):
            values: tuple[Any, ...] = (None, 1, "a", [], {}, Plain(), VoucherStatus.VALID_UNUSED, datetime.now(UTC))
            assert not any(is_awaitable(v) for v in values)
            assert is_awaitable(Awaitable())
            made = coroutine()
            answered = is_awaitable(made)  # a TypeGuard: asserting it directly would narrow `made`
            made.close()
            assert answered

    def test_generators_are_asked_each_time(self) -> None:
        plain, wrapped = generator(), generator_coroutine()
        assert not is_awaitable(plain)
        assert is_awaitable(wrapped)
        assert not is_awaitable(generator())


class TestEnumOutput:
    def test_every_enum_serializes_as_strawberry_does(self) -> None:
        enums = [t for t in build_schema()._schema.type_map.values() if isinstance(t, CustomGraphQLEnumType)]  # noqa: SLF001
        assert len(enums) >= 5
        for enum in enums:
            assert "coerce_output_value" in vars(enum), f"{enum.name} keeps the slow path"
            member: Any
            for member in enum.wrapped_cls:
                assert enum.coerce_output_value(member) == CustomGraphQLEnumType.coerce_output_value(enum, member)
                assert enum.coerce_output_value(member.value) == CustomGraphQLEnumType.coerce_output_value(
                    enum, member.value
                )

    def test_what_is_no_member_is_refused_as_before(self) -> None:
        [status] = [t for t in build_schema()._schema.type_map.values() if t.name == "VoucherStatus"]  # noqa: SLF001
        assert isinstance(status, CustomGraphQLEnumType)
        for wrong in ("NOT_A_STATUS", 7, ["VALID_USED"]):
            with pytest.raises(GraphQLError):
                status.coerce_output_value(wrong)
