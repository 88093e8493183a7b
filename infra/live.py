"""The process's one subscription to the change events, fanned out to its live subscribers.

Every API process holds a single Redis pub/sub connection on the deployment's
channel, however many clients it serves, and wakes in memory the subscribers
interested in each event. A subscriber is woken only by events of its own tenant
(the owner named in the event); it then reads the current state itself, scoped to
that tenant, so several events in a burst collapse into one read.

Pub/sub keeps nothing: while the connection is down, events are lost. After every
reconnect the hub wakes all its subscribers, so each reads the current state again
and a client never stays behind a change it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from redis.asyncio import Redis

from infra import metrics

log = logging.getLogger(__name__)

SUBSCRIBERS = metrics.gauge("vouchsafe_live_subscribers", "Subscriptions the API processes are streaming.")
# The lowest of the running processes: 0 when any of them lost its subscription.
CONNECTED = metrics.gauge(
    "vouchsafe_live_connected",
    "Whether every API process holds its Redis subscription to change events.",
    mode="livemin",
)
RESUBSCRIPTIONS = metrics.counter(
    "vouchsafe_live_resubscriptions_total", "Times an API process lost its subscription and made it again."
)


class Change(Protocol):
    """What the hub needs of a change event: what changed, and the tenant that owns it."""

    @property
    def topic(self) -> str: ...

    @property
    def id(self) -> int: ...

    @property
    def account_id(self) -> int: ...


Decode = Callable[[str | bytes], Iterable[Change]]

RETRY_SECONDS = 1.0
# A silent connection (no message) is pinged this often, so that a dead one is noticed and replaced.
PING_AFTER_IDLE_SECONDS = 15.0


class Subscriber:
    """One live subscription: woken by its object's events, read by its stream."""

    def __init__(self, topic: str, object_id: int, tenant: int) -> None:
        self.topic = topic
        self.object_id = object_id
        self.tenant = tenant
        self._pending = asyncio.Event()

    def wake(self) -> None:
        self._pending.set()

    async def changed(self) -> None:
        """Wait until the object may have changed since the last call (several events count once)."""
        await self._pending.wait()
        self._pending.clear()


class Hub:
    def __init__(self, redis: Redis, channel: str, decode: Decode, *, retry_seconds: float = RETRY_SECONDS) -> None:
        self.redis = redis
        self.decode = decode
        self.channel = channel
        # redis-py's get_message(timeout=) can swallow a cancellation that lands on its own timeout,
        # so stopping is also a flag the loops read (at least once a second).
        self._stopping = False
        self.retry_seconds = retry_seconds
        self._subscribers: dict[tuple[str, int], set[Subscriber]] = {}
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.refused = 0  # events whose owner was not the subscriber's tenant: never delivered

    @property
    def subscriber_count(self) -> int:
        return sum(len(group) for group in self._subscribers.values())

    @contextlib.contextmanager
    def subscribe(self, topic: str, object_id: int, *, tenant: int) -> Iterator[Subscriber]:
        subscriber = Subscriber(topic, object_id, tenant)
        key = (topic, object_id)
        self._subscribers.setdefault(key, set()).add(subscriber)
        SUBSCRIBERS.inc()
        try:
            yield subscriber
        finally:
            SUBSCRIBERS.dec()
            group = self._subscribers.get(key)
            if group is not None:
                group.discard(subscriber)
                if not group:
                    del self._subscribers[key]

    def dispatch(self, changes: Iterable[Change]) -> None:
        for change in changes:
            for subscriber in self._subscribers.get((change.topic, change.id), ()):
                # The tenant check on every event: an order id alone never reaches another tenant.
                if subscriber.tenant != change.account_id:
                    self.refused += 1
                    continue
                subscriber.wake()

    def wake_all(self) -> None:
        for group in self._subscribers.values():
            for subscriber in group:
                subscriber.wake()

    def stop(self) -> None:
        """End run() within a second, whatever happens to a cancellation."""
        self._stopping = True

    async def run(self) -> None:
        """Hold the subscription for the life of the process, reconnecting after any failure."""
        first = True
        while not self._stopping:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.connected.set()
                CONNECTED.set(1)
                if not first:
                    self.reconnects += 1
                    RESUBSCRIPTIONS.inc()
                    log.info("change events: subscribed again; every live subscriber reads its state anew")
                    self.wake_all()
                first = False
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected.clear()
                CONNECTED.set(0)
                log.warning("change events: subscription lost (%s: %s); retrying", type(exc).__name__, exc)
                await asyncio.sleep(self.retry_seconds)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped

    async def _listen(self, pubsub: Any) -> None:
        idle = 0.0
        while not self._stopping:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                idle += 1.0
                if idle >= PING_AFTER_IDLE_SECONDS:
                    await pubsub.ping()  # raises on a dead connection, which is then replaced
                    idle = 0.0
                continue
            idle = 0.0
            if message.get("type") != "message":
                continue
            try:
                changes = list(self.decode(message["data"]))
            except (ValueError, KeyError, TypeError):
                log.warning("change events: unreadable message ignored")
                continue
            self.dispatch(changes)
