"""Short-lived signed download URLs: a browser fetches an order's codes without a bearer header.

The token binds the order, the kind of file, who asked (a user or an API key) and
an expiry, under an HMAC-SHA256 keyed from the secret key. A valid signature is
not enough: at download time `authorize` checks again that this user or key may
still read the order's codes, so a demoted user or a revoked key stops at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tortoise.expressions import Subquery

from infra import clock
from models import ApiKey, Role, User, VoucherOrder
from services.actors import Actor
from services.errors import DomainError, ErrorCode

DOWNLOAD_TTL = timedelta(minutes=5)
FILES = {"csv": "codes.csv", "pdf": "vouchers.pdf"}
READERS = (Role.ADMIN, Role.FINANCE)
_KEY_CONTEXT = b"vouchsafe/download"
_VERSION = "v1"
# principal (u: user, k: API key) and its id, expiry in Unix seconds, 32-byte MAC in unpadded url-safe base64.
_TOKEN = re.compile(r"([uk])([1-9][0-9]{0,18})\.([1-9][0-9]{0,11})\.([A-Za-z0-9_-]{43})")


@dataclass(frozen=True)
class Grant:
    """What a verified token allows: one file of one order, for one user or API key, until it expires."""

    order_id: int
    kind: str
    user_id: int | None
    api_key_id: int | None
    expires_at: datetime


def _mac(secret: bytes, *, order_id: int, kind: str, principal: str, expires: int) -> bytes:
    key = hmac.digest(secret, _KEY_CONTEXT, hashlib.sha256)
    message = f"{_VERSION}|{order_id}|{kind}|{principal}|{expires}".encode()
    return hmac.digest(key, message, hashlib.sha256)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def download_url(
    *, secret: bytes, public_url: str, order_id: int, kind: str, actor: Actor, ttl: timedelta = DOWNLOAD_TTL
) -> str:
    """A URL to one file of an order, valid for `ttl`, for an ADMIN/FINANCE user or an API key."""
    if kind not in FILES:
        raise ValueError(f"unknown download kind {kind!r}")
    actor.require_role(*READERS)
    if actor.api_key_id is not None:
        principal = f"k{actor.api_key_id}"
    elif actor.user_id is not None:
        principal = f"u{actor.user_id}"
    else:
        raise DomainError(ErrorCode.PERMISSION_DENIED, "Downloads are for a signed-in user or an API key.")
    expires = int(clock.now().timestamp() + ttl.total_seconds())
    mac = _mac(secret, order_id=order_id, kind=kind, principal=principal, expires=expires)
    token = f"{principal}.{expires}.{_b64(mac)}"
    return f"{public_url.rstrip('/')}/downloads/orders/{order_id}/{FILES[kind]}?t={token}"


def verify(*, secret: bytes, token: str, order_id: int, kind: str) -> Grant | None:
    """The grant a token carries for this order and kind, or None (tampered, expired, other file, malformed)."""
    match = _TOKEN.fullmatch(token) if len(token) <= 100 else None
    if match is None or kind not in FILES:
        return None
    letter, principal_id, expires_text, signature = match.groups()
    expires = int(expires_text)
    expected = _mac(secret, order_id=order_id, kind=kind, principal=f"{letter}{principal_id}", expires=expires)
    if not hmac.compare_digest(signature, _b64(expected)):
        return None
    expires_at = datetime.fromtimestamp(expires, UTC)
    if clock.now() >= expires_at:
        return None
    return Grant(
        order_id=order_id,
        kind=kind,
        user_id=int(principal_id) if letter == "u" else None,
        api_key_id=int(principal_id) if letter == "k" else None,
        expires_at=expires_at,
    )


async def authorize(grant: Grant) -> VoucherOrder | None:
    """The order, if the grant's user is still an active ADMIN/FINANCE of its account (or its key unrevoked)."""
    if grant.user_id is not None:
        readers = User.filter(id=grant.user_id, is_active=True, is_staff=False, role__in=READERS)
        account_ids = Subquery(readers.values("account_id"))
    elif grant.api_key_id is not None:
        account_ids = Subquery(ApiKey.filter(id=grant.api_key_id, revoked_at=None).values("account_id"))
    else:
        return None
    # One statement: another tenant's order and a demoted user take the same path to None.
    return await VoucherOrder.filter(id=grant.order_id, account_id__in=account_ids).first()
