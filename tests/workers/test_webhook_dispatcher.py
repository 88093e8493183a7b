"""The dispatcher's bounds (per endpoint, in all, for endpoints that keep failing) and its stop (a sandbox sender)."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta

from infra import clock
from models import WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint
from services import webhook_delivery
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
        self.arrived: asyncio.Queue[str] = asyncio.Queue()  # each request as it comes in

    async def post(self, url: Url, address: str, headers: dict[str, str], body: bytes) -> Answer:
        self.in_flight[url.target] = self.in_flight.get(url.target, 0) + 1
        self.sent.append(url.target)
        self.arrived.put_nowait(url.target)
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


def config_with(sender: HeldSender, cipher: SecretCipher) -> DeliveryConfig:
    return DeliveryConfig(cipher, sender, LocalResolver(), allow_insecure=True, public_url="http://x")


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
    dispatcher = Dispatcher(config_with(sender, cipher), max_in_flight=6, per_endpoint=2, failing_share=3)
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


async def test_a_stopping_dispatcher_hands_back_the_attempts_it_cut_off(db: None) -> None:
    # given: a dispatcher whose two attempts hang at their endpoint
    actor = await tenant_admin()
    assert actor.account_id is not None
    cipher = SecretCipher(secrets.token_bytes(32))
    await endpoint_with(actor.account_id, "/hanging", 2, failing=False, cipher=cipher)
    hanging = HeldSender()
    stopping = Dispatcher(config_with(hanging, cipher))
    assert await stopping.fill() == 2
    async with asyncio.timeout(10):
        for _ in range(2):
            await hanging.arrived.get()
    # when: it stops, and its grace ends before they do
    await stopping.stop(grace=0.1)
    # then: both are due again at once (their lease of 30 s not waited out), the cut-off attempt counted,
    # and another dispatcher sends them now
    rows = await WebhookDelivery.filter(account_id=actor.account_id).values("status", "attempts", "locked_until")
    assert rows == [{"status": WebhookDeliveryStatus.PENDING, "attempts": 1, "locked_until": None}] * 2
    answering = HeldSender()
    answering.release.set()
    await Dispatcher(config_with(answering, cipher)).drain(within=30)
    rows = await WebhookDelivery.filter(account_id=actor.account_id).values("status", "attempts")
    assert rows == [{"status": WebhookDeliveryStatus.SUCCEEDED, "attempts": 2}] * 2


async def test_a_claim_another_worker_took_over_is_not_handed_back_by_the_first(db: None) -> None:
    # given: a delivery whose first claim lapsed and a second worker claimed it
    actor = await tenant_admin()
    assert actor.account_id is not None
    await endpoint_with(actor.account_id, "/taken", 1, failing=False, cipher=SecretCipher(secrets.token_bytes(32)))
    delivery = await WebhookDelivery.get(account_id=actor.account_id)
    first = await webhook_delivery.claim(delivery.id, lease=timedelta(seconds=-1))  # lapsed already
    second = await webhook_delivery.claim(delivery.id)
    assert first is not None
    assert second is not None
    # when: the first holder, stopping, hands back what it thinks it holds
    handed_back = await webhook_delivery.release(delivery.id, first)
    # then: nothing changes: the second claim holds, and its own release works
    assert not handed_back
    await delivery.refresh_from_db()
    assert delivery.locked_until == second
    assert await webhook_delivery.release(delivery.id, second)
