"""The typed per-request context: who asks, and the process's shared resources."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from strawberry.types import Info as StrawberryInfo

from schema.loaders import Loaders
from services.actors import Actor
from services.codes import CodeCipher
from services.payments import PaymentGateway
from services.ratelimit import RateLimiter
from settings import Settings


@dataclass(frozen=True)
class AppResources:
    """Created once per process (server lifespan) and shared by every request."""

    settings: Settings
    redis: Any
    limiter: RateLimiter
    gateway: PaymentGateway
    cipher: CodeCipher


@dataclass
class Context:
    resources: AppResources
    actor: Actor | None
    client: str
    request_id: str
    request: Any = None
    loaders: Loaders = field(default_factory=Loaders)

    @property
    def settings(self) -> Settings:
        return self.resources.settings


Info = StrawberryInfo[Context, None]
