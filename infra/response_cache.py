"""Cached answers for polling dashboards, kept in Redis and keyed by the tenant's data version.

Each tenant has a version number in Redis. Every committed change that a tenant can
see bumps its version: the change events of services.events (which name the owner
even when another tenant made the change, e.g. a customer redeeming a partner's
voucher), and every mutation a tenant's own user or key sends. An answer is stored
under a key that holds the version read *before* the database was read, so an
answer computed from older data can only sit under an older version, which no one
asks for again. Nothing is ever served across versions, tenants or principals.

Entries live a short while (TTL): some answers move with the clock alone (a voucher
reads EXPIRED the moment it is due; signed download links expire), and changes
made by one-off commands of the embedded default reach no running server's Redis.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from infra import metrics, redis_batch

log = logging.getLogger(__name__)
LOOKUPS = metrics.counter(
    "vouchsafe_response_cache_lookups_total", "Response cache lookups by result (hit, miss, error).", ["result"]
)
HIT, MISS, ERROR = (LOOKUPS.labels(result) for result in ("hit", "miss", "error"))

TTL_SECONDS = 30
# A version key outlives every entry stored under it by far; when it expires, its
# entries are long gone, so starting again from zero cannot meet an old entry.
VERSION_TTL_SECONDS = 24 * 3600


def version_key(namespace: str, account_id: int) -> str:
    return f"{namespace}:tenant-version:{account_id}"


def invalidate_in(pipe: Pipeline, namespace: str, account_ids: Iterable[int]) -> None:
    """Queue the version bumps on a Redis pipeline (the caller executes it)."""
    for account_id in sorted(set(account_ids)):
        key = version_key(namespace, account_id)
        pipe.incr(key)
        pipe.expire(key, VERSION_TTL_SECONDS)


async def invalidate(redis: Redis, namespace: str, account_ids: Iterable[int]) -> None:
    """Bump the versions now, or with the open batch of writes after the commits (infra.redis_batch)."""
    accounts = list(account_ids)
    await redis_batch.write(redis, "cached-answer versions", lambda pipe: invalidate_in(pipe, namespace, accounts))


async def version(redis: Redis, namespace: str, account_id: int) -> int:
    raw = await redis.get(version_key(namespace, account_id))
    return int(raw) if raw is not None else 0


def entry_key(namespace: str, *, account_id: int, version: int, principal: str, role: str, request: Any) -> str:
    """The key of one answer: tenant and its version, who asks with which role, and the exact request."""
    digest = hashlib.sha256(json.dumps(request, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f"{namespace}:answer:{account_id}:{version}:{principal}:{role}:{digest}"


async def get(redis: Redis, key: str) -> bytes | None:
    raw = await redis.get(key)
    return bytes(raw) if raw is not None else None


async def put(redis: Redis, key: str, body: bytes) -> None:
    await redis.set(key, body, ex=TTL_SECONDS)


class Principal(Protocol):
    """Who asks: a user or an API key of a tenant, with a role."""

    @property
    def account_id(self) -> int | None: ...

    @property
    def user_id(self) -> int | None: ...

    @property
    def api_key_id(self) -> int | None: ...

    @property
    def role(self) -> object: ...


@dataclass(frozen=True)
class Lookup:
    """One request looked up: the key its answer goes under, and the answer if one is stored."""

    key: str
    stored: bytes | None


def principal_of(actor: Principal) -> str:
    return f"u{actor.user_id}" if actor.user_id is not None else f"k{actor.api_key_id}"


async def look_up(redis: Redis, namespace: str, actor: Principal, request: Any) -> Lookup | None:
    """The tenant's current version, then the answer stored under it; None when Redis is unreachable.

    Call it before anything reads the database for this request (see the module's docstring).
    """
    if actor.account_id is None:
        return None
    try:
        current = await version(redis, namespace, actor.account_id)
        key = entry_key(
            namespace,
            account_id=actor.account_id,
            version=current,
            principal=principal_of(actor),
            role=str(actor.role),
            request=request,
        )
        stored = await get(redis, key)
    except Exception as exc:  # Redis down: answer from the database, as if nothing were cached
        ERROR.inc()
        log.warning("response cache unavailable: %s", exc)
        return None
    (MISS if stored is None else HIT).inc()
    return Lookup(key, stored)
