"""Change events: what services announce after a commit, for live updates.

A service that changed an order or an account calls `publish` on the bus its caller
passed in (the `EventBus` port) once its transaction has committed. An event names
what changed and the tenant that owns it, never the data: a subscriber reads the
current state itself, scoped to its own tenant, so an event can neither leak nor
carry a stale value.

Publishing is best effort. The change is committed whatever happens here, and Redis
pub/sub keeps nothing anyway: a subscriber that missed events resynchronises by
reading the current state (infra.live does so after a reconnect). So a failed
publish is logged and swallowed, never turned into an error for a committed change.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from models import VoucherOrder

log = logging.getLogger(__name__)


class Topic(StrEnum):
    ORDER = "order"  # a voucher order: status, its vouchers' statuses, PDF state, history
    ACCOUNT = "account"  # an account: balance, finance settings, partner flag


@dataclass(frozen=True)
class Change:
    topic: Topic
    id: int  # the order's or the account's id
    account_id: int  # the tenant that owns it: the only one whose subscribers hear of it
    reason: str  # what happened, for logs and tests ("PLACED", "PDF_READY", ...)

    def encode(self) -> dict[str, Any]:
        return {"t": self.topic.value, "id": self.id, "a": self.account_id, "r": self.reason}

    @classmethod
    def decode(cls, raw: dict[str, Any]) -> Change:
        return cls(topic=Topic(raw["t"]), id=int(raw["id"]), account_id=int(raw["a"]), reason=str(raw["r"]))


def order_changed(order_id: int, account_id: int, reason: str) -> Change:
    return Change(Topic.ORDER, order_id, account_id, reason)


def account_changed(account_id: int, reason: str) -> Change:
    return Change(Topic.ACCOUNT, account_id, account_id, reason)


def encode(changes: Sequence[Change]) -> str:
    return json.dumps([change.encode() for change in changes], separators=(",", ":"))


def decode(data: str | bytes) -> list[Change]:
    return [Change.decode(item) for item in json.loads(data)]


class EventBus(Protocol):
    """The port services publish through, passed in by the caller (infra.event_bus.RedisEventBus in a process).

    An adapter carries the events to every API process's live subscribers.
    """

    async def publish(self, changes: Sequence[Change]) -> None: ...


class KeptEvents:
    """The in-memory adapter: keeps what was published, heard by no other process.

    For a one-off command without Redis (no server could hear it) and for tests that
    call services directly and check what they announced.
    """

    def __init__(self) -> None:
        self.changes: list[Change] = []

    async def publish(self, changes: Sequence[Change]) -> None:
        self.changes.extend(changes)


async def publish_order(bus: EventBus, order_id: int, reason: str) -> None:
    """Announce a committed change of an order known by id only (its owner is looked up)."""
    owner = await VoucherOrder.filter(id=order_id).values("account_id")
    if owner:
        await publish(bus, [order_changed(order_id, int(owner[0]["account_id"]), reason)])


async def publish(bus: EventBus, changes: Iterable[Change]) -> None:
    """Announce committed changes. Call it after the transaction, never inside it."""
    batch = list(dict.fromkeys(changes))  # one event per object and reason, in order
    if not batch:
        return
    try:
        await bus.publish(batch)
    except Exception as exc:  # the change is committed: a lost event is resynced, not an error
        log.warning("change events not published (%s: %s): %s", type(exc).__name__, exc, batch)
