"""Passwords and opaque tokens."""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# Verified against when the e-mail is unknown, so a miss costs as much as a hit
# and response times do not tell which e-mails have accounts.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

SESSION_PREFIX = "vss_"
API_KEY_PREFIX = "vsk_"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_token(prefix: str) -> str:
    """256 bits from the CSPRNG behind a recognisable prefix."""
    return prefix + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """Tokens have full entropy, so a fast hash is enough to store them."""
    return hashlib.sha256(token.encode()).hexdigest()
