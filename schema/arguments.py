"""Arguments converted to Python by converters made once per argument, not by Strawberry's walk per request.

Before a resolver runs, Strawberry turns graphql-core's coerced arguments into Python
values (`strawberry.types.arguments.convert_arguments`): for every argument and every
field of an input, it resolves the annotation again, asks whether it is generic, a
scalar, an enum, and converts the name to camel case. For a redemption that was 7 % of
the server's CPU (bench/README.md, W3). None of those answers changes once the schema is
built, so each argument's converter is made once, with the same steps decided in advance.
Every case the plain steps do not cover (Maybe, GlobalID, LazyType, an input that builds
itself with `from_input`, an unsupported type) is handed to Strawberry's own
`convert_argument` with the same path, so its answers and errors are its own.
tests/schema/test_arguments.py compares both on generated values of every argument.

A library patch (tests/test_library_patches.py): `install` replaces the name Strawberry's
resolvers call; drop it when Strawberry plans its argument conversion itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING
from typing import Any

from strawberry.relay.types import GlobalID
from strawberry.schema import schema_converter
from strawberry.schema.config import StrawberryConfig
from strawberry.types import arguments as strawberry_arguments
from strawberry.types.arguments import StrawberryArgument, convert_argument
from strawberry.types.base import StrawberryList, StrawberryMaybe, StrawberryOptional, has_object_definition
from strawberry.types.enum import has_enum_definition
from strawberry.types.lazy_type import LazyType
from strawberry.types.unset import UNSET

# (value, info, path) -> the Python value, as `convert_argument(value, type_, ..., info, path=path)` gives it.
Converter = Callable[[Any, Any, tuple[str | int, ...]], Any]
Registry = Mapping[object, Any]
_MAX_PLANS = 10_000  # fields made at run time (tests build schemas) cannot grow it without bound
# ids of (arguments list, config, registry) -> (them, the plan): the references keep the ids from being reused.
# Schemas built from the same types (development and production) share the lists, not the config.
_Key = tuple[int, int, int]
_plans: dict[_Key, tuple[list[StrawberryArgument], StrawberryConfig, Registry, list[tuple[str, str, Converter]]]] = {}


def convert_arguments(
    value: dict[str, Any],
    arguments: list[StrawberryArgument],
    scalar_registry: Registry,
    config: StrawberryConfig,
    info: Any = None,
) -> dict[str, Any]:
    """Strawberry's `convert_arguments`, by the arguments' converters made when first used."""
    if not arguments:
        return {}
    key = (id(arguments), id(config), id(scalar_registry))
    entry = _plans.get(key)
    if entry is None:
        entry = (arguments, config, scalar_registry, _plan(arguments, scalar_registry, config))
        if len(_plans) < _MAX_PLANS:
            _plans[key] = entry
    kwargs = {}
    for name, python_name, convert in entry[3]:
        if name in value:
            kwargs[python_name] = convert(value[name], info, (name,))
    return kwargs


def _plan(
    arguments: list[StrawberryArgument], registry: Registry, config: StrawberryConfig
) -> list[tuple[str, str, Converter]]:
    plan = []
    for argument in arguments:
        assert argument.python_name
        plan.append(
            (
                config.name_converter.from_argument(argument),
                argument.python_name,
                compile_type(argument.type, registry, config),
            )
        )
    return plan


def compile_type(
    type_: Any, registry: Registry, config: StrawberryConfig, made: dict[int, Converter] | None = None
) -> Converter:
    """The converter of one type: the steps `convert_argument` would take for it, decided now."""
    made = {} if made is None else made
    known = made.get(id(type_))
    if known is not None:
        return known
    if isinstance(type_, StrawberryMaybe | LazyType) or type_ is GlobalID:
        return _generic(type_, registry, config)
    if isinstance(type_, StrawberryOptional):
        return compile_type(type_.of_type, registry, config, made)
    if isinstance(type_, StrawberryList):
        return _list(type_, registry, config, made)
    if strawberry_arguments._is_leaf_type(type_, registry) or has_enum_definition(type_):  # noqa: SLF001
        return _same
    if has_object_definition(type_) and type_.__strawberry_definition__.from_input is None:
        return _input(type_, registry, config, made)
    return _generic(type_, registry, config)  # from_input, or a type Strawberry refuses: its own answer


def _same(value: Any, info: Any, path: tuple[str | int, ...]) -> Any:
    return value  # a leaf (a scalar or an enum): graphql-core's coerced value as it is, None and UNSET too


def _generic(type_: Any, registry: Registry, config: StrawberryConfig) -> Converter:
    def convert(value: Any, info: Any, path: tuple[str | int, ...]) -> Any:
        return convert_argument(value, type_, registry, config, info, path=path)

    return convert


def _list(type_: StrawberryList, registry: Registry, config: StrawberryConfig, made: dict[int, Converter]) -> Converter:
    item_type = type_.of_type
    leaves = strawberry_arguments._is_leaf_type(item_type, registry, skip_classes=(GlobalID,))  # noqa: SLF001
    if leaves or strawberry_arguments._is_optional_leaf_type(item_type, registry, skip_classes=(GlobalID,)):  # noqa: SLF001

        def copied(value: Any, info: Any, path: tuple[str | int, ...]) -> Any:
            # Copied as Strawberry does: graphql-core shares one default list between requests.
            return value if value is None or value is UNSET else list(value)

        return copied
    item = compile_type(item_type, registry, config, made)

    def converted(value: Any, info: Any, path: tuple[str | int, ...]) -> Any:
        if value is None or value is UNSET:
            return value
        return [item(x, info, (*path, index)) for index, x in enumerate(value)]

    return converted


def _input(type_: Any, registry: Registry, config: StrawberryConfig, made: dict[int, Converter]) -> Converter:
    definition = type_.__strawberry_definition__
    # An input's nullable fields without a default are None when absent (Strawberry's implicit default).
    defaults = (
        {f.python_name: None for f in definition.fields if f.default_value is MISSING and f.default_factory is MISSING}
        if definition.is_input
        else {}
    )
    fields: list[tuple[str, str, Converter]] = []

    def convert(value: Any, info: Any, path: tuple[str | int, ...]) -> Any:
        if value is None or value is UNSET:
            return value
        kwargs = dict(defaults)
        for name, python_name, field_converter in fields:
            if name in value:
                kwargs[python_name] = field_converter(value[name], info, (*path, name))
        return type_(**kwargs)

    made[id(type_)] = convert  # before its fields: an input may hold itself
    for field in definition.fields:
        field_type = field.resolve_type(type_definition=definition)
        fields.append(
            (
                config.name_converter.from_field(field),
                field.python_name,
                compile_type(field_type, registry, config, made),
            )
        )
    return convert


def install() -> None:
    """Strawberry's resolvers convert their arguments with ours (they look the name up in their module)."""
    schema_converter.convert_arguments = convert_arguments  # type: ignore[attr-defined]
