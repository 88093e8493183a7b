"""The Redis adapter of the services' event bus (services.events.EventBus): one message per commit.

It knows no domain: an event is anything naming the tenant that owns it, and the
caller says how a batch is written on the wire (the hub, infra.live, reads it back
with the matching decoder).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from infra import redis_batch, response_cache


class Owned(Protocol):
    """What the adapter needs of an event: the tenant whose cached answers it retires."""

    @property
    def account_id(self) -> int: ...


E = TypeVar("E", bound=Owned)


class RedisEventBus(Generic[E]):
    """One message per commit on the deployment's channel (named after its queue namespace).

    In the same round trip it bumps the owners' data versions, which retires their
    cached answers (infra.response_cache) before the caller answers its client. In
    an API request it is one of the writes after the commits (infra.redis_batch).
    """

    def __init__(self, redis: Redis, namespace: str, encode: Callable[[Sequence[E]], str]) -> None:
        self.redis = redis
        self.namespace = namespace
        self.channel = channel_for(namespace)
        self._encode = encode

    async def publish(self, changes: Sequence[E]) -> None:
        message = self._encode(changes)

        def queue(pipe: Pipeline) -> None:
            response_cache.invalidate_in(pipe, self.namespace, (change.account_id for change in changes))
            pipe.publish(self.channel, message)

        await redis_batch.write(self.redis, "change events", queue)


def channel_for(namespace: str) -> str:
    # Deployments sharing a Redis keep distinct namespaces (VOUCHSAFE_QUEUE_NAME), so they never hear each other.
    return f"{namespace}:events"
