"""Voucher codes: secrets of 100 bits, shown as VS-XXXXX-XXXXX-XXXXX-XXXXX.

Crockford base32 (no I, L, O, U), read back case-insensitively with dashes and
spaces ignored and look-alikes forgiven (O -> 0, I and L -> 1). A code is stored
only as an AES-GCM ciphertext and found by its HMAC-SHA256; it is never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.errors import invalid

SYMBOLS = 20  # 20 x 5 bits = 100 bits
GROUP = 5
PREFIX = "VS"
MASK = "\u2022" * GROUP
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_FROM_RFC4648 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", CROCKFORD)
_LOOKALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})
_VALID = frozenset(CROCKFORD)


def generate() -> str:
    """A new code body: 20 symbols from the first 100 of 104 CSPRNG bits."""
    # base32 of 13 random bytes has 21 symbols; the first 20 carry 100 uniform bits.
    return base64.b32encode(secrets.token_bytes(13)).decode()[:SYMBOLS].translate(_FROM_RFC4648)


def display(body: str) -> str:
    groups = [body[i : i + GROUP] for i in range(0, SYMBOLS, GROUP)]
    return "-".join([PREFIX, *groups])


_MASKED = "-".join([PREFIX, MASK, MASK, MASK, ""])


def masked(hint: str) -> str:
    """The code as lists show it: only its last group."""
    return _MASKED + hint


# A code typed with spaces and dashes is ~30 characters; longer input is refused unread.
CODE_INPUT_MAX = 100


def check_length(text: str, *, field: str = "code") -> str:
    """The text, or INVALID on the field when it is too long to be a code in any spelling."""
    if len(text) > CODE_INPUT_MAX:
        raise invalid(field, f"At most {CODE_INPUT_MAX} characters.")
    return text


def normalize(text: str) -> str | None:
    """The code body a person typed, or None when it cannot be a code."""
    cleaned = "".join(ch for ch in text.upper() if ch not in " -\t\r\n").translate(_LOOKALIKES)
    if len(cleaned) == SYMBOLS + len(PREFIX) and cleaned.startswith(PREFIX):
        cleaned = cleaned[len(PREFIX) :]
    if len(cleaned) != SYMBOLS or not _VALID.issuperset(cleaned):
        return None
    return cleaned


# Marks a sealed document blob (format version 1); the AEAD tag, not this prefix, decides what opens.
SEALED_PREFIX = b"vs1\x00"


# Anything a code may be typed as: "VS" then 20 symbols, any case, with dashes or spaces between.
_CODE_LIKE = re.compile(r"VS[\s-]*(?:[0-9A-Z][\s-]*){19}[0-9A-Z]", re.IGNORECASE)


def redact(text: str) -> str:
    """The text with whatever looks like a code masked, for logs (a client's input is echoed in some errors)."""
    return _CODE_LIKE.sub(_MASKED + "\u2022" * GROUP, text)


@dataclass(frozen=True)
class SealedCode:
    digest: bytes
    ciphertext: bytes
    hint: str


class CodeCipher:
    """Encrypts and finds codes with two keys derived from VOUCHSAFE_CODE_KEY."""

    def __init__(self, code_key: bytes) -> None:
        self._mac_key = hmac.digest(code_key, b"vouchsafe/code/lookup", hashlib.sha256)
        self._aead = AESGCM(hmac.digest(code_key, b"vouchsafe/code/encryption", hashlib.sha256))
        # Documents holding codes (the vouchers PDF) have a key of their own, derived the same way.
        self._documents = AESGCM(hmac.digest(code_key, b"vouchsafe/document/encryption", hashlib.sha256))

    def digest(self, body: str) -> bytes:
        return hmac.digest(self._mac_key, body.encode(), hashlib.sha256)

    def seal(self, body: str) -> SealedCode:
        digest = self.digest(body)
        nonce = os.urandom(12)
        # The digest is the associated data: a ciphertext moved to another row does not open.
        ciphertext = nonce + self._aead.encrypt(nonce, body.encode(), digest)
        return SealedCode(digest=digest, ciphertext=ciphertext, hint=body[-GROUP:])

    def open(self, ciphertext: bytes, digest: bytes) -> str:
        return self._aead.decrypt(ciphertext[:12], ciphertext[12:], digest).decode()

    def seal_document(self, data: bytes, bound_to: bytes) -> bytes:
        """A stored blob that holds codes: SEALED_PREFIX, a fresh nonce, the ciphertext and its tag."""
        nonce = os.urandom(12)
        return SEALED_PREFIX + nonce + self._documents.encrypt(nonce, data, bound_to)

    def open_document(self, sealed: bytes, bound_to: bytes) -> bytes:
        """The blob, or InvalidTag when it was altered, moved to another row or is not sealed."""
        if not sealed.startswith(SEALED_PREFIX):
            raise InvalidTag
        # A view, not slices: a 1 MiB part is not copied on its way to the cipher.
        body = memoryview(sealed)[len(SEALED_PREFIX) :]
        return self._documents.decrypt(body[:12], body[12:], bound_to)
