"""The awaitable check the schema executes with: remembered per type, generators asked each time."""

from __future__ import annotations

import types
from collections.abc import Generator
from datetime import UTC, datetime
from typing import Any

from models import VoucherStatus
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
            assert not any(
                is_awaitable(v) for v in (None, 1, "a", [], {}, Plain(), VoucherStatus.VALID_UNUSED, datetime.now(UTC))
            )
            assert is_awaitable(Awaitable())
            made = coroutine()
            assert is_awaitable(made)
            made.close()

    def test_generators_are_asked_each_time(self) -> None:
        plain, wrapped = generator(), generator_coroutine()
        assert not is_awaitable(plain)
        assert is_awaitable(wrapped)
        assert not is_awaitable(generator())
