"""Per-request DataLoaders: a nested list never runs a statement per row.

A page request (first, cursor, filter) is part of the key, so all the orders of
a dashboard asking for the same page of vouchers are served by one statement.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from datetime import datetime
from functools import cached_property
from typing import Any, TypeVar

from strawberry.dataloader import DataLoader
from tortoise.functions import Count

from infra import clock
from models import ApiKey, OrderEvent, User, VoucherOrderLine, VoucherStatus
from services import cancellation, order_reads
from services.cancellation import Blocker, OrderFacts

K = TypeVar("K", bound=Hashable)
G = TypeVar("G", bound=Hashable)
V = TypeVar("V")


def grouped(
    group_of: Callable[[K], G], load: Callable[[G, list[K]], Awaitable[dict[K, V]]]
) -> Callable[[list[K]], Awaitable[list[V]]]:
    """A batch function that runs one load per distinct group of keys (e.g. per page size)."""

    async def batch(keys: list[K]) -> list[V]:
        groups: dict[G, list[K]] = defaultdict(list)
        for key in keys:
            groups[group_of(key)].append(key)
        found: dict[K, V] = {}
        for group, members in groups.items():
            found.update(await load(group, members))
        return [found[key] for key in keys]

    return batch


class Loaders:
    """One request's loaders, each made when a resolver first asks for it.

    Made lazily: a mutation or a small query uses none or a few, and making all eight
    showed in a redemption's profile (bench/README.md, W3).
    """

    def __init__(self) -> None:
        # One instant per request: every status in a response is read as of the same moment.
        self.now: datetime = clock.now()

    @cached_property
    def lines(self) -> DataLoader[int, list[VoucherOrderLine]]:
        return DataLoader(self._lines)

    @cached_property
    def status_counts(self) -> DataLoader[int, dict[VoucherStatus, int]]:
        return DataLoader(self._status_counts)

    @cached_property
    def vouchers(self) -> DataLoader[Any, list[order_reads.VoucherRow]]:
        return DataLoader(grouped(lambda k: k[1:], self._vouchers))

    @cached_property
    def events(self) -> DataLoader[Any, list[order_reads.EventRow]]:
        return DataLoader(grouped(lambda k: k[1:], self._events))

    @cached_property
    def event_totals(self) -> DataLoader[int, int]:
        return DataLoader(self._event_totals)

    @cached_property
    def blockers(self) -> DataLoader[OrderFacts, list[Blocker]]:
        return DataLoader(self._blockers)

    @cached_property
    def user_emails(self) -> DataLoader[int, str | None]:
        return DataLoader(self._user_emails)

    @cached_property
    def api_key_names(self) -> DataLoader[int, str | None]:
        return DataLoader(self._api_key_names)

    async def _lines(self, order_ids: Sequence[int]) -> list[list[VoucherOrderLine]]:
        by_order: dict[int, list[VoucherOrderLine]] = defaultdict(list)
        for line in await VoucherOrderLine.filter(order_id__in=list(order_ids)).order_by("order_id", "position"):
            by_order[line.order_id].append(line)
        return [by_order[oid] for oid in order_ids]

    async def _status_counts(self, order_ids: Sequence[int]) -> list[dict[VoucherStatus, int]]:
        counts = await order_reads.status_counts(list(order_ids), self.now)
        return [counts[oid] for oid in order_ids]

    async def _vouchers(
        self, group: tuple[int, int | None, VoucherStatus | None], keys: list[tuple[int, int, int | None, Any]]
    ) -> dict[Any, list[order_reads.VoucherRow]]:
        limit, after_id, status = group
        rows = await order_reads.first_vouchers(
            [k[0] for k in keys], limit=limit, after_id=after_id, status=status, now=self.now
        )
        return {k: rows.get(k[0], []) for k in keys}

    async def _events(
        self, group: tuple[int, int | None], keys: list[tuple[int, int, int | None]]
    ) -> dict[Any, list[order_reads.EventRow]]:
        limit, before_id = group
        rows = await order_reads.first_events([k[0] for k in keys], limit=limit, before_id=before_id)
        return {k: rows.get(k[0], []) for k in keys}

    async def _event_totals(self, order_ids: Sequence[int]) -> list[int]:
        rows = (
            await OrderEvent.filter(order_id__in=list(order_ids))
            .annotate(n=Count("id"))
            .group_by("order_id")
            .values_list("order_id", "n")
        )
        totals = {int(oid): int(n) for oid, n in rows}
        return [totals.get(oid, 0) for oid in order_ids]

    async def _blockers(self, orders: Sequence[OrderFacts]) -> list[list[Blocker]]:
        found = await cancellation.blockers(list(orders), self.now)
        return [found[o.id] for o in orders]

    async def _user_emails(self, ids: Sequence[int]) -> list[str | None]:
        emails = dict(await User.filter(id__in=list(ids)).values_list("id", "email"))
        return [emails.get(i) for i in ids]

    async def _api_key_names(self, ids: Sequence[int]) -> list[str | None]:
        names = dict(await ApiKey.filter(id__in=list(ids)).values_list("id", "name"))
        return [names.get(i) for i in ids]
