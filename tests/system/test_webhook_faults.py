"""Webhooks under faults, on PostgreSQL + Redis: a worker killed mid-delivery, two workers, a Redis outage.

Workers are real `vouchsafe worker` processes (or the in-process worker on a Redis of the
test's own); the receiver is a process on loopback that verifies each request with
`standardwebhooks`. Every wait has a deadline.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from models import WebhookDelivery, WebhookDeliveryStatus
from services import webhooks
from services.actors import Actor
from services.webhook_delivery import LEASE
from services.webhook_secrets import SecretCipher
from services.webhook_urls import SystemResolver
from settings import Settings
from tests.support.api import Api, loopback_client
from tests.support.factories import deposit, line, order, partner, tenant_admin
from tests.support.processes import command, deployed_env, stop
from tests.support.redis import OwnRedis
from tests.support.running import running_worker, wait_for
from tests.support.stores import REDIS_URL
from tests.support.webhook_receiver import Receiver

pytestmark = pytest.mark.postgres

CREATE = """mutation C($input: WebhookEndpointCreateInput!) { webhookEndpointCreate(input: $input) {
  secret errors { code } } }"""
WAIT = 90.0


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path) as running:
        yield running


class Workers:
    """`vouchsafe worker` processes allowed to send webhooks to loopback; all stopped at the end."""

    def __init__(self, settings: Settings, root: Path) -> None:
        self.settings, self.root = settings, root
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        assert REDIS_URL
        n = len(self.processes) + 1
        (self.root / f"worker-{n}").mkdir(parents=True, exist_ok=True)
        env = deployed_env(
            self.settings, self.root / f"worker-{n}", redis_url=REDIS_URL, VOUCHSAFE_WEBHOOKS_ALLOW_INSECURE="1"
        )
        with (self.root / f"worker-{n}.log").open("ab") as log:
            process = subprocess.Popen(
                [*command(), "worker"], env=env, cwd=self.root, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        self.processes.append(process)
        return process

    def log(self, n: int) -> str:
        return (self.root / f"worker-{n}.log").read_text()

    def stop(self) -> None:
        for process in self.processes:
            stop(process)


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    running = Workers(settings, tmp_path)
    try:
        yield running
    finally:
        running.stop()


async def endpoint_for(actor: Actor, settings: Settings, receiver: Receiver, path: str) -> int:
    rules = webhooks.UrlRules(resolver=SystemResolver(), allow_insecure=True)
    created = await webhooks.create_endpoint(
        actor=actor,
        url=receiver.url(path),
        events=["BALANCE_LOW"],  # type: ignore[list-item]
        description=None,
        rules=rules,
        cipher=SecretCipher(settings.secret_key),
    )
    receiver.secrets(path, created.secret)
    return created.endpoint.id


async def test_a_worker_killed_mid_delivery_leaves_it_to_the_next_one_same_webhook_id(
    db: None, settings: Settings, receiver: Receiver, workers: Workers
) -> None:
    # given: an event whose receiver takes its time to answer the first request
    actor = await tenant_admin()
    endpoint_id = await endpoint_for(actor, settings, receiver, "/kill")
    receiver.script("/kill", (200, 8.0))
    first = workers.start()
    sent = await webhooks.send_test(actor=actor, endpoint_id=endpoint_id)
    # when: the worker is killed (-9) while its request is in flight, and another one starts
    # Polled: the worker and the receiver are processes of their own.
    await wait_for(lambda: _arrived(receiver, "/kill", 1), within=WAIT)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=15)
    in_flight = await WebhookDelivery.get(id=sent.id)
    assert in_flight.status == WebhookDeliveryStatus.PENDING
    assert in_flight.locked_until is not None
    workers.start()

    async def delivered() -> bool:
        row = await WebhookDelivery.get(id=sent.id)
        return row.status == WebhookDeliveryStatus.SUCCEEDED

    # then: once the lease lapses, the new worker sends it again, with the same webhook-id
    # Polled: the new worker process sends it once the lease lapses.
    await wait_for(delivered, within=LEASE.total_seconds() + WAIT)
    got = receiver.received("/kill")
    assert [r["id"] for r in got] == [sent.event_id, sent.event_id]
    assert all(r["verified_with"] == [0] for r in got)
    row = await WebhookDelivery.get(id=sent.id)
    assert row.attempts == 2
    assert row.last_status_code == 200


async def test_two_workers_deliver_every_event_once(
    db: None, settings: Settings, receiver: Receiver, workers: Workers
) -> None:
    # given: two workers, two endpoints of one account answering slowly enough to need both
    actor = await tenant_admin()
    endpoints = [await endpoint_for(actor, settings, receiver, path) for path in ("/one", "/two")]
    for path in ("/one", "/two"):
        receiver.script(path, *[(200, 0.3)] * 20)
    workers.start(), workers.start()
    # when: 20 events for each
    sent = [await webhooks.send_test(actor=actor, endpoint_id=e) for e in endpoints for _ in range(20)]

    async def all_delivered() -> bool:
        ids = [s.id for s in sent]
        return await WebhookDelivery.filter(id__in=ids, status=WebhookDeliveryStatus.SUCCEEDED).count() == len(ids)

    # Polled: worker processes deliver to the receiver process.
    await wait_for(all_delivered, within=WAIT)
    # then: each webhook-id arrived exactly once, verified, and both workers sent some
    got = receiver.received()
    assert sorted(r["id"] for r in got) == sorted(s.event_id for s in sent)
    assert all(r["verified_with"] == [0] for r in got)
    assert receiver.state()["most_in_flight"]["/one"] <= 4  # two workers, PER_ENDPOINT each
    for n in (1, 2):
        assert "delivered" in workers.log(n), workers.log(n)[-2000:]


@pytest.fixture
async def outage_api(settings: Settings, own_redis: OwnRedis) -> AsyncIterator[Api]:
    from server import create_app

    app_settings = replace(settings, redis_url=own_redis.url, webhooks_allow_insecure=True)
    app = create_app(app_settings)
    async with app.router.lifespan_context(app), running_worker(app_settings):
        transport = httpx.ASGITransport(app=app, client=loopback_client())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield Api(http)


async def test_webhooks_keep_going_through_a_redis_outage(
    outage_api: Api, own_redis: OwnRedis, receiver: Receiver
) -> None:
    api = outage_api
    buyer = await partner(api)
    created = await api(
        CREATE,
        {
            "input": {
                "url": receiver.url("/outage"),
                "events": ["DEPOSIT_SUCCEEDED", "VOUCHER_ORDER_PLACED", "VOUCHER_ORDER_PDF_READY"],
            }
        },
        token=buyer["token"],
    )
    receiver.secrets("/outage", created["data"]["webhookEndpointCreate"]["secret"])
    # when: Redis stops, and A deposits and orders
    own_redis.stop()
    try:
        assert (await deposit(api, buyer["token"], "50.00"))["errors"] == []
        placed = (await order(api, buyer["token"], line(quantity=1), paymentMethod="ACCOUNT_BALANCE"))["order"]
        # then: their webhooks arrive while it is down (deliveries need the database, not the queue)
        # Polled: the worker delivers to the receiver process while Redis is down.
        got = await wait_for(lambda: _arrived(receiver, "/outage", 2), within=WAIT)
        assert sorted(json.loads(r["body"])["type"] for r in got) == ["deposit.succeeded", "voucher_order.placed"]
    finally:
        own_redis.start()
    # and the PDF, a job that waited for Redis, is announced once it is back
    # Polled: the job waits for the restarted redis-server, another process.
    got = await wait_for(lambda: _arrived(receiver, "/outage", 3), within=WAIT)
    ready = [json.loads(r["body"]) for r in got if json.loads(r["body"])["type"] == "voucher_order.pdf_ready"]
    assert ready[0]["data"]["order"]["number"] == placed["number"]
    assert all(r["verified_with"] == [0] for r in got)
    assert len({r["id"] for r in got}) == 3


async def _arrived(receiver: Receiver, path: str, count: int) -> list[dict[str, object]] | None:
    got = receiver.received(path)
    return got if len(got) >= count else None
