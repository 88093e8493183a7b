"""Webhook signing secrets: made, stored encrypted, and used to sign per the Standard Webhooks spec.

A secret is `whsec_` + the base64 of 32 random bytes; the decoded bytes are the HMAC key.
It is stored only as an AES-GCM ciphertext under a key derived from VOUCHSAFE_SECRET_KEY,
with the endpoint's id as associated data (a ciphertext copied to another row does not
open), shown once when made, and never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "whsec_"
SECRET_BYTES = 32
_NONCE = 12


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def key_bytes(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret: its base64 part decoded (what receivers' libraries do)."""
    return base64.b64decode(secret.removeprefix(PREFIX))


class SecretCipher:
    """Seals endpoint secrets with a key derived from the deployment's secret key."""

    def __init__(self, secret_key: bytes) -> None:
        self._aead = AESGCM(hmac.digest(secret_key, b"vouchsafe/webhook/secret-encryption", hashlib.sha256))

    def seal(self, secret: str, endpoint_id: int) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, secret.encode(), _associated(endpoint_id))

    def open(self, sealed: bytes, endpoint_id: int) -> str:
        return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], _associated(endpoint_id)).decode()


def _associated(endpoint_id: int) -> bytes:
    return f"webhook-endpoint:{endpoint_id}".encode()


def signature(secret: str, *, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.digest(key_bytes(secret), signed, hashlib.sha256)).decode()


def headers(secrets_: list[str], *, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers; one signature per secret, space-separated (a rotation signs twice)."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            signature(secret, message_id=message_id, timestamp=timestamp, body=body) for secret in secrets_
        ),
    }
