"""Document-level limits checked at validation, before any resolver runs."""

from __future__ import annotations

from typing import Any

from graphql import ArgumentNode, GraphQLError, IntValueNode, ValidationRule

from schema.pagination import MAX_PAGE_SIZE

PAGE_ARGUMENTS = frozenset({"first", "last"})


class PageSizeLimit(ValidationRule):
    """A literal `first`/`last` above the cap refuses the whole document, whether or not any
    row would reach that field (a variable is checked when the field resolves)."""

    def enter_argument(self, node: ArgumentNode, *_: Any) -> None:
        value = node.value
        if (
            node.name.value in PAGE_ARGUMENTS
            and isinstance(value, IntValueNode)
            and not 0 <= int(value.value) <= MAX_PAGE_SIZE
        ):
            self.report_error(
                GraphQLError(
                    f"Page size must be between 0 and {MAX_PAGE_SIZE}.", node, extensions={"code": "BAD_REQUEST"}
                )
            )
