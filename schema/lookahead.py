"""Reading ahead in the selection set: which fields below this one the document asks for.

A list resolver that knows what its items' fields will need can read it for the whole
page in one statement, instead of each field asking for its own. Fragments (named
and inline) are looked through; @include/@skip are not evaluated, so a skipped field
is read for nothing at worst, never missed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField, Selection


def _fields(selections: Iterable[Selection]) -> Iterator[SelectedField]:
    for selection in selections:
        if isinstance(selection, SelectedField):
            yield selection
        elif isinstance(selection, FragmentSpread | InlineFragment):
            yield from _fields(selection.selections)


def selected(current: Iterable[Selection], *path: str) -> list[SelectedField]:
    """Every field at `path` (GraphQL names) below `current` (`info.selected_fields`: it converts the
    whole selection set at each read, so read it once), under any alias or fragment."""
    found: list[SelectedField] = []
    for root in _fields(current):
        level = [root]
        for name in path:
            level = [child for parent in level for child in _fields(parent.selections) if child.name == name]
        found.extend(level)
    return found


def names(fields: Iterable[SelectedField]) -> set[str]:
    """The names of the fields selected directly below these."""
    return {child.name for parent in fields for child in _fields(parent.selections)}
