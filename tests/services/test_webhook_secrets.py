"""Webhook secrets: sealed at rest, and signatures a Standard Webhooks library verifies."""

from __future__ import annotations

import base64
import secrets
import time

import pytest
from cryptography.exceptions import InvalidTag
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.webhook_secrets import PREFIX, SecretCipher, headers, key_bytes, new_secret, signature


def test_a_secret_is_whsec_and_32_random_bytes() -> None:
    secret = new_secret()
    assert secret.startswith(PREFIX)
    assert len(key_bytes(secret)) == 32
    assert new_secret() != secret


def test_a_sealed_secret_opens_only_for_its_endpoint_and_key() -> None:
    cipher = SecretCipher(secrets.token_bytes(32))
    secret = new_secret()
    sealed = cipher.seal(secret, 7)
    assert secret.encode() not in sealed
    assert key_bytes(secret) not in sealed
    assert cipher.open(sealed, 7) == secret
    with pytest.raises(InvalidTag):
        cipher.open(sealed, 8)  # moved to another endpoint's row
    with pytest.raises(InvalidTag):
        SecretCipher(secrets.token_bytes(32)).open(sealed, 7)


def test_the_signature_is_the_libraries_own() -> None:
    secret, body = new_secret(), b'{"type":"webhook.test","data":{"x":"\xc3\xa9"}}'
    now = int(time.time())
    from datetime import UTC, datetime

    expected = Webhook(secret).sign("evt_1", datetime.fromtimestamp(now, UTC), body)
    assert signature(secret, message_id="evt_1", timestamp=now, body=body) == expected
    assert expected.startswith("v1,")
    assert len(base64.b64decode(expected[3:])) == 32


def test_during_a_rotation_both_secrets_verify_the_same_request() -> None:
    old, new, body = new_secret(), new_secret(), b'{"type":"balance.low"}'
    signed = headers([new, old], message_id="evt_2", timestamp=int(time.time()), body=body)
    assert len(signed["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(body, signed)
    Webhook(new).verify(body, signed)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, signed)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body + b" ", signed)
