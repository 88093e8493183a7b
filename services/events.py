"""Change events: what services announce after a commit, for live updates.

A service that changed an order or an account calls `publish` once its transaction
has committed. An event names what changed and the tenant that owns it, never the
data: a subscriber reads the current state itself, scoped to its own tenant, so an
event can neither leak nor carry a stale value.

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

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from infra import redis_batch, response_cache
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
    """The port services publish through; an adapter carries the events to every API process."""

    async def publish(self, changes: Sequence[Change]) -> None: ...


class RedisEventBus:
    """One message per commit on the deployment's channel (named after its queue namespace).

    In the same round trip it bumps the owners' data versions, which retires their
    cached answers (infra.response_cache) before the caller answers its client. In
    an API request it is one of the writes after the commits (infra.redis_batch).
    """

    def __init__(self, redis: Redis, namespace: str) -> None:
        self.redis = redis
        self.namespace = namespace
        self.channel = channel_for(namespace)

    async def publish(self, changes: Sequence[Change]) -> None:
        message = encode(changes)

        def queue(pipe: Pipeline) -> None:
            response_cache.invalidate_in(pipe, self.namespace, (change.account_id for change in changes))
            pipe.publish(self.channel, message)

        await redis_batch.write(self.redis, "change events", queue)


def channel_for(namespace: str) -> str:
    # Deployments sharing a Redis keep distinct namespaces (VOUCHSAFE_QUEUE_NAME), so they never hear each other.
    return f"{namespace}:events"


# Installed by the process's composition root (server lifespan, worker start-up); a
# process with none (a one-off command) publishes nothing. Several can be installed
# when tests run more than one app in one process.
_buses: list[EventBus] = []


def install(bus: EventBus) -> None:
    _buses.append(bus)


def uninstall(bus: EventBus) -> None:
    if bus in _buses:
        _buses.remove(bus)


async def publish_order(order_id: int, reason: str) -> None:
    """Announce a committed change of an order known by id only (its owner is looked up)."""
    owner = await VoucherOrder.filter(id=order_id).values("account_id")
    if owner:
        await publish([order_changed(order_id, int(owner[0]["account_id"]), reason)])


async def publish(changes: Iterable[Change]) -> None:
    """Announce committed changes. Call it after the transaction, never inside it."""
    batch = list(dict.fromkeys(changes))  # one event per object and reason, in order
    if not batch:
        return
    for bus in list(_buses):
        try:
            await bus.publish(batch)
        except Exception as exc:  # the change is committed: a lost event is resynced, not an error
            log.warning("change events not published (%s: %s): %s", type(exc).__name__, exc, batch)
