"""The dispatcher's bounds: per endpoint, in all, and for endpoints that keep failing (a sandbox sender)."""

from __future__ import annotations

import asyncio
import secrets

from infra import clock
from models import WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint
from services.webhook_delivery import DeliveryConfig
from services.webhook_http import Answer
from services.webhook_secrets import SecretCipher, new_secret
from services.webhook_urls import Url
from tests.support.factories import tenant_admin
from workers.webhooks import Dispatcher


class HeldSender:
    """Holds every request until released; counts what is in flight per host."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.in_flight: dict[str, int] = {}
        self.sent: list[str] = []

    async def post(self, url: Url, address: str, headers: dict[str, str], body: bytes) -> Answer:
        self.in_flight[url.target] = self.in_flight.get(url.target, 0) + 1
        self.sent.append(url.target)
        try:
            await self.release.wait()
        finally:
            self.in_flight[url.target] -= 1
        return Answer(status=200, body="ok")

    async def aclose(self) -> None:
        return None


class LocalResolver:
    async def resolve(self, host: str, port: int) -> list[str]:
        return ["127.0.0.1"]


async def endpoint_with(account_id: int, path: str, deliveries: int, *, failing: bool, cipher: SecretCipher) -> int:
    now = clock.now()
    endpoint = await WebhookEndpoint.create(
        account_id=account_id,
        url=f"http://hooks.test{path}",
        events=["BALANCE_LOW"],
        secret_ciphertext=b"",
        failing_since=now if failing else None,
        created_at=now,
        updated_at=now,
    )
    endpoint.secret_ciphertext = cipher.seal(new_secret(), endpoint.id)
    await endpoint.save(update_fields=["secret_ciphertext"])
    await WebhookDelivery.bulk_create(
        [
            WebhookDelivery(
                endpoint_id=endpoint.id,
                account_id=account_id,
                event_id=f"evt_{secrets.token_hex(8)}",
                event_type="webhook.test",
                payload="{}",
                status=WebhookDeliveryStatus.PENDING,
                next_attempt_at=now,
                created_at=now,
            )
            for _ in range(deliveries)
        ]
    )
    return int(endpoint.id)


async def test_failing_endpoints_never_take_the_slots_healthy_ones_need(db: None) -> None:
    # given: three endpoints that keep failing, each with a backlog, and one healthy endpoint
    actor = await tenant_admin()
    assert actor.account_id is not None
    cipher = SecretCipher(secrets.token_bytes(32))
    for n in range(3):
        await endpoint_with(actor.account_id, f"/dead{n}", 10, failing=True, cipher=cipher)
    await endpoint_with(actor.account_id, "/healthy", 10, failing=False, cipher=cipher)
    sender = HeldSender()
    config = DeliveryConfig(cipher, sender, LocalResolver(), allow_insecure=True, public_url="http://x")
    dispatcher = Dispatcher(config, max_in_flight=6, per_endpoint=2, failing_share=3)
    # when: it fills its slots, twice (the second finds them full)
    await dispatcher.fill()
    await dispatcher.fill()
    await asyncio.sleep(0.2)
    # then: the healthy endpoint has its two, the failing ones share three: one slot stays free
    assert sender.in_flight["/healthy"] == 2
    assert sum(n for path, n in sender.in_flight.items() if path.startswith("/dead")) == 3
    assert all(n <= 2 for n in sender.in_flight.values())
    assert len(dispatcher.running) == 5
    sender.release.set()
    await dispatcher.drain(within=30)
    assert (
        await WebhookDelivery.filter(account_id=actor.account_id, status=WebhookDeliveryStatus.SUCCEEDED).count() == 40
    )
    assert dispatcher.outcomes["delivered"] == 40
