"""Relay cursor connections on keyset pagination (newest first, by id).

Keyset cursors stay correct while rows are added: a page never repeats or
skips a row because something newer arrived.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import strawberry
from strawberry.utils.await_maybe import AwaitableOrValue
from tortoise.queryset import QuerySet

from schema.common import pk_of
from schema.errors import ClientError

MAX_PAGE_SIZE = 100
MAX_CURSOR_LENGTH = 100  # ours are ~30 characters
DEFAULT_PAGE_SIZE = 20

T = TypeVar("T")


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    # The total, or how to read it: a number already read comes back without a coroutine.
    count: strawberry.Private[Callable[[], AwaitableOrValue[int]]]

    @strawberry.field(graphql_type=int, description="All items matching the filter, over every page.")
    def total_count(self) -> AwaitableOrValue[int]:
        return self.count()


def encode_cursor(key: int) -> str:
    return base64.urlsafe_b64encode(f"k:{key}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise ClientError(f"Invalid cursor: at most {MAX_CURSOR_LENGTH} characters.")
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if kind != "k":
            raise ValueError(cursor)
        key = pk_of(value)
        if key < 0:
            raise ValueError(cursor)
        return key
    except (ValueError, UnicodeDecodeError) as exc:
        raise ClientError("Invalid cursor.") from exc


def page_size(first: int | None, last: int | None) -> tuple[int, bool]:
    """(size, backwards) of a page request, refused above MAX_PAGE_SIZE."""
    if first is not None and last is not None:
        raise ClientError("Pass first or last, not both.")
    size = last if last is not None else first if first is not None else DEFAULT_PAGE_SIZE
    if size < 0 or size > MAX_PAGE_SIZE:
        raise ClientError(f"Page size must be between 0 and {MAX_PAGE_SIZE}.")
    return size, last is not None


async def paginate(
    queryset: QuerySet[Any],
    convert: Callable[[Any], T],
    *,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> Connection[T]:
    """One page of a tenant-scoped queryset, newest (highest id) first."""
    size, backwards = page_size(first, last)
    query = queryset
    if after is not None:
        query = query.filter(id__lt=decode_cursor(after))
    if before is not None:
        query = query.filter(id__gt=decode_cursor(before))
    rows: Sequence[Any] = await query.order_by("id" if backwards else "-id").limit(size + 1)
    return page_of(rows, convert, size=size, backwards=backwards, after=after, before=before, count=queryset.count)


def page_of(
    rows: Sequence[Any],
    convert: Callable[[Any], T],
    *,
    size: int,
    backwards: bool,
    after: str | None,
    before: str | None,
    count: Callable[[], AwaitableOrValue[int]],
) -> Connection[T]:
    """The connection of a page read as `size + 1` rows by id, newest first (oldest first when backwards)."""
    has_more = len(rows) > size
    rows = list(rows[:size])
    if backwards:
        rows.reverse()
    edges = [Edge(cursor=encode_cursor(row.id), node=convert(row)) for row in rows]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=has_more if not backwards else before is not None,
            has_previous_page=has_more if backwards else after is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        count=count,
    )
