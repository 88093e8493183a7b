"""The typed per-request context: who asks, and the process's shared resources."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from arq.connections import ArqRedis
from strawberry.types import Info as StrawberryInfo

from infra.live import Hub
from infra.ratelimit import RateLimiter
from infra.response_cache import Lookup
from schema.loaders import Loaders
from services.actors import Actor
from services.codes import CodeCipher
from services.events import EventBus
from services.payments import PaymentGateway
from settings import Settings


@dataclass(frozen=True)
class AppResources:
    """Created once per process (server lifespan) and shared by every request."""

    settings: Settings
    redis: ArqRedis  # the queue's client; a redis.asyncio.Redis for everything else
    limiter: RateLimiter
    gateway: PaymentGateway
    cipher: CodeCipher
    bus: EventBus  # where services announce committed changes (live updates, cached answers retired)
    hub: Hub  # the process's one subscription to change events (live updates)


@dataclass
class Context:
    resources: AppResources
    actor: Actor | None
    client: str
    request_id: str
    request: Any = None
    loaders: Loaders = field(default_factory=Loaders)
    token: str | None = None  # kept for WebSocket streams, which check the session again on each event
    # graphql-transport-ws: the connection_init payload, where a browser client puts its token.
    connection_params: dict[str, Any] | None = None
    # The response cache's lookup, when the HTTP front made it before GraphQL ran (and missed).
    cache_lookup: Lookup | None = None
    # The answer's data and its JSON, when the response cache encoded it to store it: the HTTP
    # front sends those bytes instead of encoding the same data again.
    encoded_data: tuple[Any, bytes] | None = None

    @property
    def settings(self) -> Settings:
        return self.resources.settings


Info = StrawberryInfo[Context, None]
