"""Idempotency keys with Stripe's semantics, scoped per account.

A repeat with the same key and the same input returns the first result and
moves nothing; the same key with other input is IDEMPOTENCY_KEY_REUSED; a
concurrent repeat gets the first result or IDEMPOTENCY_KEY_IN_PROGRESS, which
is safe to retry. A request that failed moved nothing and records nothing, so
its key may be used again. Finished keys are kept for KEEP and then purged; a card
request cut off between its charge and its commit is kept until a retry resumes it or an
operator resolves it (`unresolved`).

Two shapes, because an outside call must never run inside a transaction:
- `once`: the record is written in the effect's own transaction (balance-only
  operations); a concurrent twin blocks on the unique index, then replays.
- `begin` / `complete` / `abandon`: the record is committed first and leased
  while a card is charged; a crashed request's lease lapses and a retry resumes
  it, charging again under the same gateway key (so not twice).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from infra import clock
from models import IdempotencyRecord, IdempotencyStatus
from services.errors import DomainError, ErrorCode, invalid

KEEP = timedelta(hours=25)
LEASE = timedelta(minutes=2)
# A card request's record still IN_PROGRESS this long after its lease lapsed: neither committed
# nor given up, and no retry came. Its card may have been charged for nothing (`unresolved`).
UNRESOLVED_AFTER = timedelta(minutes=15)
MAX_KEY_LENGTH = 255

Response = dict[str, Any]


def fingerprint(operation: str, request: dict[str, Any]) -> str:
    canonical = json.dumps({"operation": operation, **request}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def clean_key(key: str | None) -> str | None:
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise invalid("idempotency_key", f"1 to {MAX_KEY_LENGTH} printable characters.")
    return key


def _reused() -> DomainError:
    return DomainError(
        ErrorCode.IDEMPOTENCY_KEY_REUSED, "This idempotency key was used with other input.", "idempotency_key"
    )


def _in_progress() -> DomainError:
    return DomainError(
        ErrorCode.IDEMPOTENCY_KEY_IN_PROGRESS,
        "A request with this idempotency key is still running; retry shortly.",
        "idempotency_key",
    )


async def stored_response(
    *, account_id: int, key: str | None, operation: str, request: dict[str, Any]
) -> Response | None:
    """The first response of a finished request with this key and input, if there is one.

    For checks made before the effect's transaction that must not refuse a replay (a
    purchase replayed after it spent the balance is answered, not INSUFFICIENT_FUNDS).
    """
    if key is None:
        return None
    record = await _existing(account_id, key, operation, fingerprint(operation, request))
    if record is None or record.status != IdempotencyStatus.DONE:
        return None
    return record.response


async def _existing(account_id: int, key: str, operation: str, digest: str) -> IdempotencyRecord | None:
    """The live record for the key, after checking it is for the same request."""
    record = await IdempotencyRecord.filter(account_id=account_id, key=key).first()
    if record is None:
        return None
    if record.expires_at <= clock.now() and record.status == IdempotencyStatus.DONE:
        # Past its keeping time a finished key is free again. One IN_PROGRESS stays: unresolved
        # (`unresolved`), a retry resumes it under the same gateway key instead of charging anew.
        await IdempotencyRecord.filter(id=record.id, expires_at=record.expires_at).delete()
        return None
    if record.operation != operation or record.request_hash != digest:
        raise _reused()
    return record


async def once(
    *,
    account_id: int,
    key: str | None,
    operation: str,
    request: dict[str, Any],
    effect: Callable[[BaseDBAsyncClient], Awaitable[Response]],
) -> Response:
    """Run a database-only effect at most once per key, in one transaction with its record."""
    if key is None:
        async with in_transaction() as conn:
            return await effect(conn)
    digest = fingerprint(operation, request)
    for _ in range(2):  # a second pass after an expired record was cleared
        record = await _existing(account_id, key, operation, digest)
        if record is not None:
            if record.status == IdempotencyStatus.DONE and record.response is not None:
                return record.response
            raise _in_progress()
        try:
            async with in_transaction() as conn:
                record = await IdempotencyRecord.create(
                    account_id=account_id,
                    key=key,
                    operation=operation,
                    request_hash=digest,
                    status=IdempotencyStatus.IN_PROGRESS,
                    expires_at=clock.now() + KEEP,
                    using_db=conn,
                )
                response = await effect(conn)
                await (
                    IdempotencyRecord.filter(id=record.id)
                    .using_db(conn)
                    .update(status=IdempotencyStatus.DONE, response=response)
                )
                return response
        except IntegrityError:
            # A twin committed the key first (PostgreSQL made us wait for it): replay it.
            if await IdempotencyRecord.filter(account_id=account_id, key=key).exists():
                continue
            raise
    raise _in_progress()


@dataclass(frozen=True)
class Begun:
    record_id: int | None
    replay: Response | None = None


def gateway_key(account_id: int, record_id: int) -> str:
    """The idempotency key the gateway saw for a keyed request's card charge: a retry charges under it again."""
    return f"{account_id}:idem-{record_id}"


async def begin(*, account_id: int, key: str | None, operation: str, request: dict[str, Any]) -> Begun:
    """Claim a key before an outside call; a finished key returns its first response to replay."""
    if key is None:
        return Begun(record_id=None)
    digest = fingerprint(operation, request)
    now = clock.now()
    for _ in range(2):
        record = await _existing(account_id, key, operation, digest)
        if record is not None:
            if record.status == IdempotencyStatus.DONE:
                return Begun(record_id=record.id, replay=record.response)
            # A crashed request's lease lapses; exactly one retry takes it over.
            taken = await IdempotencyRecord.filter(
                id=record.id, status=IdempotencyStatus.IN_PROGRESS, locked_until__lt=now
            ).update(locked_until=now + LEASE)
            if taken:
                return Begun(record_id=record.id)
            raise _in_progress()
        try:
            record = await IdempotencyRecord.create(
                account_id=account_id,
                key=key,
                operation=operation,
                request_hash=digest,
                status=IdempotencyStatus.IN_PROGRESS,
                locked_until=now + LEASE,
                expires_at=now + KEEP,
            )
            return Begun(record_id=record.id)
        except IntegrityError:
            continue
    raise _in_progress()


async def complete(begun: Begun, response: Response, *, using_db: BaseDBAsyncClient) -> None:
    """Record the response, inside the transaction of the effect."""
    if begun.record_id is not None:
        await (
            IdempotencyRecord.filter(id=begun.record_id)
            .using_db(using_db)
            .update(status=IdempotencyStatus.DONE, response=response, locked_until=None)
        )


async def left_open(begun: Begun) -> bool:
    """Is the request's record still IN_PROGRESS, so its transaction (which completes it) did not commit?"""
    if begun.record_id is None:
        return True  # no key, no record to tell: taken as not committed, as before
    record = await IdempotencyRecord.filter(id=begun.record_id).only("id", "status").first()
    return record is not None and record.status == IdempotencyStatus.IN_PROGRESS


async def abandon(begun: Begun) -> None:
    """Nothing was moved: free the key so the request can be made again."""
    if begun.record_id is not None:
        await IdempotencyRecord.filter(id=begun.record_id, status=IdempotencyStatus.IN_PROGRESS).delete()


@dataclass(frozen=True)
class Unresolved:
    record_id: int
    account_id: int
    operation: str
    created_at: datetime
    gateway_key: str  # what to look the charge up by at the payment provider


def _unresolved(now: datetime) -> QuerySet[IdempotencyRecord]:
    # `begin`'s records only: `once` writes its record in the effect's transaction, never IN_PROGRESS alone.
    cutoff = now - UNRESOLVED_AFTER
    return IdempotencyRecord.filter(status=IdempotencyStatus.IN_PROGRESS, locked_until__lt=cutoff)


async def unresolved() -> list[Unresolved]:
    """Card requests left between their charge and their commit: the client never came back (docs/operations.md)."""
    rows = await _unresolved(clock.now()).order_by("created_at", "id")
    return [Unresolved(r.id, r.account_id, r.operation, r.created_at, gateway_key(r.account_id, r.id)) for r in rows]


async def count_unresolved() -> int:
    return int(await _unresolved(clock.now()).count())


async def resolve(record_id: int) -> bool:
    """An operator settled an unresolved request with the provider (refunded, or found no charge): forget it.

    Compare-and-set: a retry that took the request over meanwhile (its lease is live) is left to finish.
    """
    return bool(await _unresolved(clock.now()).filter(id=record_id).delete())


async def purge_expired() -> int:
    """Delete finished records past their keeping time (a periodic task); unresolved ones wait for an operator."""
    return await IdempotencyRecord.filter(expires_at__lt=clock.now(), status=IdempotencyStatus.DONE).delete()
