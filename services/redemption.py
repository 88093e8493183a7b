"""Redeeming a voucher: a certificate request, exactly once per voucher, whatever races.

Redemption follows the LOCK ORDER of services.cancellation: it locks the order row
first, checks the order is still ACTIVE, and only then turns the voucher from
VALID_UNUSED to VALID_USED by compare-and-set, in the transaction that creates the
certificate request (on PostgreSQL the code's lookup and all of this are one statement:
`_REDEEM_PG`). A partial unique index allows one live request per voucher.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from infra import clock
from infra.ratelimit import Limit, RateLimiter
from models import (
    CertificateRequest,
    CertificateRequestStatus,
    OrderEvent,
    OrderEventKind,
    Voucher,
    VoucherOrder,
    VoucherOrderLine,
    VoucherOrderStatus,
    VoucherStatus,
)
from services import codes, events, webhook_events
from services.actors import Actor
from services.errors import DomainError, ErrorCode, not_found
from services.events import EventBus
from services.limits import count_attempt
from services.names import RequestedNames, check_allowance, check_csr, requested_names
from services.order_reads import effective_status

log = logging.getLogger(__name__)

REUSE_WINDOW = timedelta(days=30)
LOOKUPS_PER_CLIENT = Limit("redeem:client", 10, 15 * 60)
LOOKUPS_PER_ACCOUNT = Limit("redeem:account", 10, 15 * 60)


def _unknown() -> DomainError:
    # One answer for every reason a code is unknown (malformed, never issued, another key).
    return DomainError(ErrorCode.NOT_FOUND, "No voucher has this code.", "code")


def _not_redeemable(status: VoucherStatus) -> DomainError:
    reasons = {
        VoucherStatus.VALID_USED: "This voucher has been used.",
        VoucherStatus.EXPIRED: "This voucher has expired.",
        VoucherStatus.CANCELLED: "This voucher was cancelled.",
    }
    return DomainError(ErrorCode.VOUCHER_NOT_REDEEMABLE, reasons.get(status, "This voucher cannot be used."), "code")


@dataclass(frozen=True)
class Redeemable:
    """What a code buys, as the redemption page shows it."""

    voucher: Voucher
    line: VoucherOrderLine
    status: VoucherStatus

    @property
    def redeemable(self) -> bool:
        return self.status == VoucherStatus.VALID_UNUSED


@cache
def _lookup_sql(dialect: str) -> str:
    """The code's voucher and its line (what the voucher allows) in one statement.

    Written out once per dialect rather than built per call: Tortoise's query building
    with a join cost a redemption more CPU than its two statements' round trips
    (bench/README.md, W3). The columns are the models' own.
    """
    line_fields = VoucherOrderLine._meta.db_fields
    columns = [f'v."{c}"' for c in sorted(Voucher._meta.db_fields)]
    columns += [f'l."{c}" AS "line.{c}"' for c in sorted(line_fields)]
    placeholder = "$1" if dialect == "postgres" else "?"
    return (
        f"SELECT {', '.join(columns)} FROM {Voucher._meta.db_table} v"
        f" JOIN {VoucherOrderLine._meta.db_table} l ON l.id = v.line_id WHERE v.code_digest = {placeholder}"
    )


async def _find(code: str, cipher: codes.CodeCipher) -> Voucher | None:
    body = codes.normalize(code)
    if body is None:
        return None
    conn = connections.get("default")
    _, rows = await conn.execute_query(_lookup_sql(conn.capabilities.dialect), [cipher.digest(body)])
    if not rows:
        return None
    row = dict(rows[0])
    line = {key[5:]: value for key, value in row.items() if key.startswith("line.")}
    # _init_from_db is how Tortoise itself turns a row into a model (its raw() and
    # select_related do the same); the line is attached as select_related attaches it.
    fields = {key: value for key, value in row.items() if not key.startswith("line.")}
    voucher = Voucher._init_from_db(**fields)  # noqa: SLF001
    object.__setattr__(voucher, "_line", VoucherOrderLine._init_from_db(**line))  # noqa: SLF001
    return voucher


def _subjects(client: str, actor: Actor | None) -> list[tuple[Limit, str]]:
    """What a lookup counts against: the client, and the account when one is signed in."""
    subjects = [(LOOKUPS_PER_CLIENT, client)]
    if actor is not None and actor.account_id is not None:
        subjects.append((LOOKUPS_PER_ACCOUNT, str(actor.account_id)))
    return subjects


async def _forgive(limiter: RateLimiter, subjects: list[tuple[Limit, str]]) -> None:
    """A hit is forgiven, best effort: on PostgreSQL the redemption has committed by now.

    A Redis failure here must not turn a used voucher into an error for its customer (who
    would try again and be told it is used). The attempt then stays counted: the limit
    errs on the strict side, and its window ends it.
    """
    try:
        await limiter.forgive_all(subjects)
    except Exception as exc:
        log.warning("a voucher lookup's attempt was not forgiven: %s", exc)


async def _counted_lookup(
    code: str, *, cipher: codes.CodeCipher, client: str, actor: Actor | None, limiter: RateLimiter
) -> Voucher:
    """Find a code (with its line), counting the try against the client and the account; a hit is forgiven."""
    subjects = _subjects(client, actor)
    await count_attempt(limiter, subjects)
    voucher = await _find(code, cipher)
    if voucher is None:
        raise _unknown()
    await _forgive(limiter, subjects)
    return voucher


async def voucher_by_code(
    *, code: str, cipher: codes.CodeCipher, client: str, actor: Actor | None, limiter: RateLimiter
) -> Redeemable:
    """What a code buys, or why it cannot be used; unknown codes count against the rate limit."""
    codes.check_length(code)
    voucher = await _counted_lookup(code, cipher=cipher, client=client, actor=actor, limiter=limiter)
    return Redeemable(voucher, voucher.line, effective_status(voucher.status, voucher.expires_at, clock.now()))


@dataclass(frozen=True)
class RequestInput:
    code: str
    common_name: str
    additional_fqdns: list[str]
    wildcards: list[str]
    csr: str | None


async def redeem(
    *, actor: Actor, request: RequestInput, cipher: codes.CodeCipher, client: str, limiter: RateLimiter, bus: EventBus
) -> CertificateRequest:
    """Any signed-in user redeems a code with a certificate request that fits the voucher."""
    if actor.user_id is None or actor.account_id is None:
        raise DomainError(ErrorCode.PERMISSION_DENIED, "Sign in as a person to request a certificate.")
    codes.check_length(request.code)
    names = requested_names(request.common_name, request.additional_fqdns, request.wildcards)
    csr = check_csr(request.csr, names) if request.csr and request.csr.strip() else None
    now = clock.now()
    values = {
        "account_id": actor.account_id,
        "user_id": actor.user_id,
        "common_name": names.common_name,
        "additional_fqdns": names.additional_fqdns,
        "wildcards": names.wildcards,
        "csr": csr,
        "status": CertificateRequestStatus.SUBMITTED,
        "created_at": now,
    }
    event = {"commonName": names.common_name, "at": now.isoformat()}
    conn = connections.get("default")
    if conn.capabilities.dialect == "postgres":
        subjects = _subjects(client, actor)
        await count_attempt(limiter, subjects)
        used = await _redeem_in_one_statement(conn, request.code, cipher, names, values, event)
        await _forgive(limiter, subjects)  # a hit: unknown codes raised before this
        if used.request is None:
            raise await _why_not(used.voucher_id, names, now)
        created, order_id, owner_id = used.request, used.order_id, used.owner_id
    else:
        voucher = await _counted_lookup(request.code, cipher=cipher, client=client, actor=actor, limiter=limiter)
        check_allowance(names, fqdns=voucher.line.fqdns, wildcards=voucher.line.wildcards)
        event["voucher"] = voucher.code_hint
        created = await _use(voucher, {**values, "voucher_id": voucher.id}, event)
        order_id, owner_id = voucher.order_id, voucher.account_id
    # The order's owner hears of it, not the redeeming account (usually another tenant).
    await events.publish(bus, [events.order_changed(order_id, owner_id, "VOUCHER_REDEEMED")])
    return created


def _refusal(voucher: Voucher, now: datetime) -> DomainError:
    """Why a compare-and-set changed nothing: the voucher's status as of now (read after it)."""
    return _not_redeemable(effective_status(voucher.status, voucher.expires_at, now))


async def _use(voucher: Voucher, values: dict[str, Any], event: dict[str, Any]) -> CertificateRequest:
    """The voucher used and the request created, in one transaction (SQLite)."""
    now = values["created_at"]
    async with in_transaction() as conn:
        # LOCK ORDER: the order row first (services.cancellation).
        order = await VoucherOrder.filter(id=voucher.order_id).using_db(conn).select_for_update().get()
        if order.status != VoucherOrderStatus.ACTIVE:
            raise _not_redeemable(VoucherStatus.CANCELLED)
        used = (
            await Voucher.filter(id=voucher.id, status=VoucherStatus.VALID_UNUSED, expires_at__gt=now)
            .using_db(conn)
            .update(status=VoucherStatus.VALID_USED, used_at=now)
        )
        if not used:
            raise _refusal(await Voucher.get(id=voucher.id, using_db=conn), now)
        created = await CertificateRequest.create(**values, using_db=conn)
        await OrderEvent.create(order_id=order.id, kind=OrderEventKind.VOUCHER_REDEEMED, data=event, using_db=conn)
        await webhook_events.voucher_redeemed(conn, order, voucher, now)
    return created


# The lookup and the transaction of _use as one statement (autocommit): one round trip
# where _find and _use make seven (the lookup, BEGIN, lock, compare-and-set, two inserts,
# COMMIT), which is most of a redemption's cost under load (bench/README.md, W3).
# LOCK ORDER holds: the voucher's UPDATE reads the locked order row (`o`), so the order
# row is locked before the voucher row is. Under READ COMMITTED a row changed since the
# statement's snapshot is re-read when locked, so a cancellation or a rival redemption
# that committed while this waited is seen: the order is not ACTIVE any more, or the
# voucher not VALID_UNUSED, and nothing is written. The allowance is checked in the
# UPDATE too (the names' counts, $3 and $4); when nothing was written, the caller finds
# out why from the found row (`f`), the order's status and, last, the voucher's.
# FOR NO KEY UPDATE, as the expiry sweep: it conflicts with a cancel's or another
# redemption's order lock, not with a worker inserting rows that merely reference the order.
_REDEEM_PG = f"""
WITH f AS (
    SELECT v.id, v.order_id, v.account_id, v.code_hint, l.fqdns, l.wildcards, l.product_code, l.validity_years,
           (SELECT number FROM voucher_order WHERE id = v.order_id) AS order_number
    FROM voucher v JOIN voucher_order_line l ON l.id = v.line_id WHERE v.code_digest = $1
),
o AS (SELECT status FROM voucher_order WHERE id = (SELECT order_id FROM f) FOR NO KEY UPDATE),
v AS (
    UPDATE voucher SET status = 'VALID_USED', used_at = $2
    WHERE id = (SELECT id FROM f WHERE fqdns >= $3 AND wildcards >= $4)
        AND status = 'VALID_UNUSED' AND expires_at > $2 AND EXISTS (SELECT 1 FROM o WHERE status = 'ACTIVE')
    RETURNING id
),
r AS (
    INSERT INTO certificate_request
        (voucher_id, account_id, user_id, common_name, additional_fqdns, wildcards, csr, status, created_at)
    SELECT id, $5, $6, $7, $8::text::jsonb, $9::text::jsonb, $10, 'SUBMITTED', $2 FROM v
    RETURNING *
),
e AS (
    INSERT INTO order_event (order_id, kind, data, created_at)
    SELECT f.order_id, 'VOUCHER_REDEEMED', $11::text::jsonb || jsonb_build_object('voucher', f.code_hint), $2
    FROM v, f
),
{webhook_events.REDEEMED_PG}
SELECT f.id AS found_voucher_id, f.order_id AS found_order_id, f.account_id AS found_owner_id, r.*
FROM (VALUES (1)) AS one LEFT JOIN f ON true LEFT JOIN r ON true
"""


@dataclass(frozen=True)
class _Used:
    request: CertificateRequest | None  # None: the statement wrote nothing (see _why_not)
    voucher_id: int
    order_id: int
    owner_id: int  # the order's account


async def _redeem_in_one_statement(
    conn: BaseDBAsyncClient,
    code: str,
    cipher: codes.CodeCipher,
    names: RequestedNames,
    values: dict[str, Any],
    event: dict[str, Any],
) -> _Used:
    """What _REDEEM_PG did with a known code; unknown codes raise."""
    body = codes.normalize(code)
    if body is None:
        raise _unknown()
    now = values["created_at"]
    args = [cipher.digest(body), now, names.plain_count, names.wildcard_count, values["account_id"]]
    args += [values["user_id"], values["common_name"], json.dumps(values["additional_fqdns"])]
    args += [json.dumps(values["wildcards"]), values["csr"], json.dumps(event)]
    # voucher.redeemed for the owner's endpoints, in the same statement (webhook_events.REDEEMED_PG).
    args += [webhook_events.new_event_id(), webhook_events.instant(now), codes.masked("")]
    [row] = await conn.execute_query_dict(_REDEEM_PG, args)
    voucher_id, order_id, owner_id = (row.pop(f"found_{key}") for key in ("voucher_id", "order_id", "owner_id"))
    if voucher_id is None:
        raise _unknown()
    # The inserted row as the database has it, made a model as Tortoise makes fetched rows
    # (cheaper than building an unsaved model first: bench/README.md, W3).
    created = CertificateRequest._init_from_db(**row) if row["id"] is not None else None  # noqa: SLF001
    return _Used(created, voucher_id, order_id, owner_id)


async def _why_not(voucher_id: int, names: RequestedNames, now: datetime) -> DomainError:
    """Why _REDEEM_PG wrote nothing for a known code: its allowance, its order or its status, as of now."""
    voucher = await Voucher.get(id=voucher_id).select_related("line", "order")
    try:
        check_allowance(names, fqdns=voucher.line.fqdns, wildcards=voucher.line.wildcards)
    except DomainError as exceeded:
        return exceeded
    if voucher.order.status != VoucherOrderStatus.ACTIVE:
        return _not_redeemable(VoucherStatus.CANCELLED)
    return _refusal(voucher, now)


@dataclass(frozen=True)
class Ended:
    request: CertificateRequest
    voucher_released: bool
    notice: DomainError | None


async def end_request(*, actor: Actor, request_id: int, revoke: bool, bus: EventBus) -> Ended:
    """The requester cancels a request (SUBMITTED) or revokes its certificate (ISSUED).

    Within 30 days of the request the voucher is released for a new request (unless it
    has expired); later it stays used and the caller is told REUSE_WINDOW_CLOSED.
    """
    account_id = actor.require_account()
    found = await CertificateRequest.filter(id=request_id, account_id=account_id).first()
    if found is None:
        raise not_found("id", "No such certificate request.")
    before, after = (
        (CertificateRequestStatus.ISSUED, CertificateRequestStatus.REVOKED)
        if revoke
        else (CertificateRequestStatus.SUBMITTED, CertificateRequestStatus.CANCELLED)
    )
    voucher = await Voucher.get(id=found.voucher_id)
    async with in_transaction() as conn:
        order = await VoucherOrder.filter(id=voucher.order_id).using_db(conn).select_for_update().get()
        now = clock.now()
        ended = (
            await CertificateRequest.filter(id=found.id, status=before)
            .using_db(conn)
            .update(status=after, ended_at=now)
        )
        if not ended:
            verb = "revoked: only an issued certificate" if revoke else "cancelled: only a submitted request"
            raise DomainError(ErrorCode.INVALID, f"This cannot be {verb} can.", "id")
        released, notice = False, None
        if now - found.created_at <= REUSE_WINDOW:
            released = bool(
                await Voucher.filter(id=voucher.id, status=VoucherStatus.VALID_USED, expires_at__gt=now)
                .using_db(conn)
                .update(status=VoucherStatus.VALID_UNUSED)
            )
        else:
            notice = DomainError(
                ErrorCode.REUSE_WINDOW_CLOSED,
                "More than 30 days after the request: the voucher stays used.",
                "id",
            )
        if released:
            await OrderEvent.create(
                order_id=voucher.order_id,
                kind=OrderEventKind.VOUCHER_RELEASED,
                data={
                    "voucher": voucher.code_hint,
                    "commonName": found.common_name,
                    "ended": after.value,
                    "at": now.isoformat(),
                },
                using_db=conn,
            )
            await webhook_events.voucher_released(conn, order, voucher, revoke, now)
    if released:
        await events.publish(bus, [events.order_changed(voucher.order_id, voucher.account_id, "VOUCHER_RELEASED")])
    return Ended(await CertificateRequest.get(id=found.id), released, notice)


async def issue_request(*, actor: Actor, request_id: int, bus: EventBus) -> CertificateRequest:
    """Staff mark a submitted request as issued (the CA's issuance happens elsewhere)."""
    actor.require_staff()
    changed = await CertificateRequest.filter(id=request_id, status=CertificateRequestStatus.SUBMITTED).update(
        status=CertificateRequestStatus.ISSUED, issued_at=clock.now()
    )
    if not changed:
        raise not_found("id", "No submitted certificate request with that id.")
    issued = await CertificateRequest.get(id=request_id)
    # Staff changed what the requesting account sees (its requests): its cached answers go.
    await events.publish(bus, [events.account_changed(issued.account_id, "CERTIFICATE_ISSUED")])
    return issued
