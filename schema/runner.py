"""Strawberry's extension runner, with each extension class's hooks inspected once instead of every request.

For each stage of every request (operation, validation, parsing, execution) Strawberry
asks of every extension what kind its hook is (`inspect.isgeneratorfunction`, ...), binds
it and wraps it in a new context-manager function (`contextlib.contextmanager`, with its
`functools.wraps`): 16 inspections and wrappings for a redemption, a few percent of its
CPU (bench/README.md, W3). The kind of a hook is the class's, so it is decided once per
class and hook; each request only makes the context managers, which call the same hook
with the same extension in the same order: the same effects, the same errors.

A library patch (tests/test_library_patches.py): `RememberedHooks.get_hook` takes the steps of
Strawberry's `ExtensionContextManagerBase.get_hook`; drop it when Strawberry remembers them itself.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from asyncio import iscoroutinefunction
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from strawberry.extensions import SchemaExtension
from strawberry.extensions.context import (
    ExecutingContextManager,
    ExtensionContextManagerBase,
    OperationContextManager,
    ParsingContextManager,
    ValidationContextManager,
    WrappedHook,
)
from strawberry.extensions.runner import SchemaExtensionsRunner

# (extension class, hook name) -> (extension -> its context manager, whether it is async), or None: no hook.
_Made = tuple[Callable[[SchemaExtension], Any], bool] | None
_hooks: dict[tuple[type, str], _Made] = {}
_MAX_HOOKS = 10_000  # classes made at run time cannot grow it without bound


def _made(extension: SchemaExtension, name: str, default: Any) -> _Made:
    """What Strawberry's get_hook decides for this extension's class's hook, as a factory taking the extension."""
    hook_fn = getattr(type(extension), name)
    if hook_fn is default:
        return None
    if inspect.isgeneratorfunction(hook_fn):
        return contextlib.contextmanager(hook_fn), False
    if inspect.isasyncgenfunction(hook_fn):
        return contextlib.asynccontextmanager(hook_fn), True
    if callable(hook_fn):
        return _from_callable(hook_fn)
    raise ValueError(f"Hook {name} on {extension} must be callable, received {hook_fn!r}")


def _from_callable(func: Callable[[SchemaExtension], Any]) -> tuple[Callable[[SchemaExtension], Any], bool]:
    if iscoroutinefunction(func):

        @contextlib.asynccontextmanager
        async def awaited(extension: SchemaExtension) -> AsyncIterator[None]:
            await func(extension)
            yield

        return awaited, True

    @contextlib.contextmanager
    def called(extension: SchemaExtension) -> Iterator[None]:
        func(extension)
        yield

    return called, False


class RememberedHooks(ExtensionContextManagerBase):
    __slots__ = ()

    def get_hook(self, extension: SchemaExtension) -> WrappedHook | None:
        key = (type(extension), self.HOOK_NAME)
        try:
            made = _hooks[key]
        except KeyError:
            made = _made(extension, self.HOOK_NAME, self.default_hook)
            if len(_hooks) < _MAX_HOOKS:
                _hooks[key] = made
        if made is None:
            return None
        factory, is_async = made
        return WrappedHook(extension=extension, hook=functools.partial(factory, extension), is_async=is_async)


class Operation(RememberedHooks, OperationContextManager):
    __slots__ = ()


class Validation(RememberedHooks, ValidationContextManager):
    __slots__ = ()


class Parsing(RememberedHooks, ParsingContextManager):
    __slots__ = ()


class Executing(RememberedHooks, ExecutingContextManager):
    __slots__ = ()


class ExtensionsRunner(SchemaExtensionsRunner):
    """Strawberry's runner; its stages' context managers remember each class's hooks."""

    def operation(self) -> Operation:
        return Operation(self.extensions)

    def validation(self) -> Validation:
        return Validation(self.extensions)

    def parsing(self) -> Parsing:
        return Parsing(self.extensions)

    def executing(self) -> Executing:
        return Executing(self.extensions)
