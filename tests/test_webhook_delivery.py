"""Webhooks delivered for real: a receiver process on loopback verifies every request with `standardwebhooks`.

The app runs no worker: the test sends what the API's changes wrote with the worker's
webhook dispatcher (`dispatcher.drain()` returns once every due attempt is recorded, and
the receiver records a request before it answers), and runs the other jobs (PDFs,
e-mails) in burst mode (`run_jobs`); no step waits on a timer. Time-dependent rules (the
retry schedule, the 5-day rule, the rotation overlap) move the clock (`shifted`), which
the dispatcher reads too; the webhook-timestamp header stays the real time, as the
receiver's library checks it against its own clock.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from infra import clock
from models import Voucher, VoucherOrder, WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint
from services import expiry
from services.webhook_delivery import RETRY_SCHEDULE
from settings import Settings
from tests.support.api import Api, without_worker
from tests.support.factories import deposit, line, order, partner, tenant
from tests.support.running import run_jobs, shifted
from tests.support.webhook_receiver import Receiver
from workers.tasks import webhook_dispatcher
from workers.webhooks import Dispatcher

ALL_EVENTS = [
    "VOUCHER_ORDER_PLACED",
    "VOUCHER_ORDER_PDF_READY",
    "VOUCHER_ORDER_CANCELLED",
    "VOUCHER_REDEEMED",
    "VOUCHER_RELEASED",
    "VOUCHERS_EXPIRED",
    "DEPOSIT_SUCCEEDED",
    "BALANCE_LOW",
]
CREATE = """mutation C($input: WebhookEndpointCreateInput!) { webhookEndpointCreate(input: $input) {
  endpoint { id } secret errors { code field message } } }"""
ROTATE = """mutation R($id: ID!) { webhookEndpointRotateSecret(input: {id: $id}) { secret errors { code } } }"""
TEST = """mutation T($id: ID!) { webhookEndpointTest(input: {id: $id}) { delivery { id eventId } errors { code } } }"""
THRESHOLD = """mutation { financeSettingsUpdate(input: {lowBalanceThreshold: "5050.00"}) { errors { code } } }"""
REVEAL = """mutation R($id: ID!) { voucherCodesReveal(input: {orderId: $id}) { codes { code voucher { id } } } }"""
REDEEM = """mutation R($input: VoucherRedeemInput!) { voucherRedeem(input: $input) {
  certificateRequest { id } errors { code message } } }"""
RELEASE = """mutation C($id: ID!) { certificateRequestCancel(input: {id: $id}) { voucherReleased errors { code } } }"""
CANCEL = """mutation C($id: ID!) { voucherOrderCancel(input: {orderId: $id}) { order { status } errors { code } } }"""
NODE = "query N($id: ID!) { node(id: $id) { id __typename } }"


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    running = Receiver(tmp_path).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def insecure(settings: Settings) -> Settings:
    return replace(settings, webhooks_allow_insecure=True)


@pytest.fixture
async def api(insecure: Settings) -> AsyncIterator[Api]:
    async with without_worker(insecure) as api:  # the test sends the webhooks (dispatcher) and runs the jobs (run_jobs)
        yield api


@pytest.fixture
async def dispatcher(api: Api, insecure: Settings) -> AsyncIterator[Dispatcher]:
    """The worker's webhook dispatcher, driven by the test: `drain()` sends what is due now and waits for it."""
    sending = webhook_dispatcher(insecure, api.app.state.resources.redis)
    try:
        yield sending
    finally:
        await sending.stop()
        await sending.config.sender.aclose()


async def subscribe(api: Api, token: str, receiver: Receiver, path: str, events: list[str] = ALL_EVENTS) -> str:
    """An endpoint of the token's account at the receiver's path; the receiver verifies with its secret."""
    result = await api(CREATE, {"input": {"url": receiver.url(path), "events": events}}, token=token)
    created = result["data"]["webhookEndpointCreate"]
    assert created["errors"] == [], created
    receiver.secrets(path, created["secret"])
    return str(created["endpoint"]["id"])


@contextlib.contextmanager
def later(receiver: Receiver, delta: timedelta) -> Iterator[None]:
    """As if `delta` had passed, for this process and for the receiver's signature checks alike."""
    receiver.clock(delta.total_seconds())
    try:
        with shifted(delta):
            yield
    finally:
        receiver.clock(0)


async def delivery_of(event_id: str) -> WebhookDelivery:
    return await WebhookDelivery.get(event_id=event_id)


async def settled(event_id: str, status: WebhookDeliveryStatus) -> WebhookDelivery:
    """The delivery, recorded so: in that state, its attempt over (no lease held)."""
    row = await delivery_of(event_id)
    assert (row.status, row.locked_until) == (status, None), row
    return row


async def send_test(api: Api, token: str, endpoint_id: str) -> str:
    tested = (await api(TEST, {"id": endpoint_id}, token=token))["data"]["webhookEndpointTest"]
    assert tested["errors"] == []
    return str(tested["delivery"]["eventId"])


class TestEveryEvent:
    async def test_each_event_type_reaches_the_owner_signed_and_no_other_tenant(
        self, api: Api, dispatcher: Dispatcher, receiver: Receiver
    ) -> None:
        # given: partners A and B, each with an endpoint subscribed to everything
        a, b = await partner(api), await partner(api)
        await subscribe(api, a["token"], receiver, "/a")
        await subscribe(api, b["token"], receiver, "/b")
        # when: A deposits, lowers its balance under its threshold with an order, a customer (B)
        # redeems and releases a voucher of it, A cancels another order, and the vouchers expire
        assert (await deposit(api, a["token"], "100.00"))["errors"] == []
        assert (await api(THRESHOLD, token=a["token"]))["data"]["financeSettingsUpdate"]["errors"] == []
        first = (await order(api, a["token"], line("BASIC_OV", 2), paymentMethod="ACCOUNT_BALANCE"))["order"]
        second = (await order(api, a["token"], line("BASIC_OV", 1), paymentMethod="ACCOUNT_BALANCE"))["order"]
        codes = (await api(REVEAL, {"id": first["id"]}, token=a["token"]))["data"]["voucherCodesReveal"]["codes"]
        redeemed = await api(
            REDEEM, {"input": {"code": codes[0]["code"], "commonName": "shop.example"}}, token=b["token"]
        )
        request_id = redeemed["data"]["voucherRedeem"]["certificateRequest"]["id"]
        assert (await api(RELEASE, {"id": request_id}, token=b["token"]))["data"]["certificateRequestCancel"][
            "voucherReleased"
        ]
        assert (await api(CANCEL, {"id": second["id"]}, token=a["token"]))["data"]["voucherOrderCancel"]["errors"] == []

        async def pdfs_ready() -> bool:
            return (
                await VoucherOrder.filter(number__in=[first["number"], second["number"]], pdf_status="READY").count()
                == 2
            )

        await run_jobs(api.app)  # the two orders' PDFs
        assert await pdfs_ready()
        # the first order's vouchers come to their end (only these: the run's other vouchers stay as they are)
        await Voucher.filter(order__number=first["number"]).update(expires_at=clock.now() - timedelta(seconds=1))
        assert await expiry.expire_due(bus=api.bus) >= 2
        assert (await deposit(api, b["token"], "20.00"))["errors"] == []
        await dispatcher.drain()  # every delivery written so far, sent and recorded
        # then: A hears of every type (placed and PDF ready twice), each signed with A's secret
        got = receiver.received("/a")
        bodies = [json.loads(r["body"]) for r in got]
        types = sorted(body["type"] for body in bodies)
        rows = await WebhookDelivery.all().values("event_type", "status", "attempts", "last_error", "next_attempt_at")
        assert types == sorted(
            [
                "deposit.succeeded",
                "balance.low",
                "voucher_order.placed",
                "voucher_order.placed",
                "voucher_order.pdf_ready",
                "voucher_order.pdf_ready",
                "voucher.redeemed",
                "voucher.released",
                "voucher_order.cancelled",
                "vouchers.expired",
            ]
        ), rows
        assert all(r["verified_with"] == [0] for r in got), got
        assert len({r["id"] for r in got}) == len(got)
        by_type = {body["type"]: body["data"] for body in bodies}
        assert by_type["deposit.succeeded"]["ledgerEntry"]["amount"] == {"amount": "100.00", "currencyCode": "USD"}
        assert by_type["balance.low"]["threshold"] == {"amount": "5050.00", "currencyCode": "USD"}
        assert by_type["voucher_order.cancelled"]["order"]["status"] == "CANCELLED"
        assert by_type["voucher_order.cancelled"]["refund"]["amount"]["currencyCode"] == "USD"
        assert by_type["vouchers.expired"] == {**by_type["vouchers.expired"], "count": 2}
        assert by_type["vouchers.expired"]["order"]["number"] == first["number"]
        voucher = by_type["voucher.redeemed"]["voucher"]
        assert voucher["id"] == codes[0]["voucher"]["id"]
        assert voucher["maskedCode"] == "VS-•••••-•••••-•••••-" + codes[0]["code"][-5:]
        assert by_type["voucher.released"]["voucher"]["status"] == "VALID_UNUSED"
        placed = [body["data"]["order"] for body in bodies if body["type"] == "voucher_order.placed"]
        assert {p["number"] for p in placed} == {first["number"], second["number"]}
        assert all(p["lines"][0]["unitPrice"]["amount"].count(".") == 1 for p in placed)
        # the ids are global ids A's API answers
        ids = [by_type["deposit.succeeded"]["ledgerEntry"]["id"], voucher["id"], placed[0]["id"]]
        ids.append(by_type["balance.low"]["account"]["id"])
        for node_id in ids:
            assert (await api(NODE, {"id": node_id}, token=a["token"]))["data"]["node"]["id"] == node_id
        # no full code, and nothing of B's (its certificate request, its account) anywhere
        text = "\n".join(r["body"] for r in got)
        for code in codes:
            assert code["code"] not in text
            assert code["code"].replace("-", "") not in text
        assert request_id not in text
        assert "shop.example" not in text
        # B heard of its own deposit only
        [own] = receiver.received("/b")
        assert json.loads(own["body"])["type"] == "deposit.succeeded"
        assert own["verified_with"] == [0]
        assert first["number"] not in own["body"]
        assert len(receiver.received("/b")) == 1


class TestRetries:
    async def test_a_500_then_a_200_is_retried_and_delivered_once(
        self, api: Api, dispatcher: Dispatcher, receiver: Receiver
    ) -> None:
        admin = await tenant(api)
        endpoint_id = await subscribe(api, admin["token"], receiver, "/flaky")
        receiver.script("/flaky", (500, 0))
        event_id = await send_test(api, admin["token"], endpoint_id)
        await dispatcher.drain()
        [first] = receiver.received("/flaky")
        assert first["status"] == 500
        assert first["id"] == event_id
        assert first["verified_with"] == [0]
        pending = await delivery_of(event_id)
        assert (pending.attempts, pending.locked_until, pending.last_status_code) == (1, None, 500)
        assert pending.status == WebhookDeliveryStatus.PENDING
        assert pending.next_attempt_at is not None
        assert pending.last_response_body == '{"answer": 500}'
        assert "HTTP 500" in (pending.last_error or "")
        with later(receiver, RETRY_SCHEDULE[0]):
            await dispatcher.drain()  # the retry is due
        both = receiver.received("/flaky")
        assert [r["status"] for r in both] == [500, 200]
        assert {r["id"] for r in both} == {event_id}
        assert all(r["verified_with"] == [0] for r in both)
        done = await settled(event_id, WebhookDeliveryStatus.SUCCEEDED)
        assert done.attempts == 2
        assert done.last_status_code == 200
        with shifted(timedelta(days=2)):
            await dispatcher.drain()  # nothing is due any more, however long one waits
        assert len(receiver.received("/flaky")) == 2  # delivered once: no third request

    async def test_a_receiver_that_is_down_gets_it_when_it_comes_back(
        self, api: Api, dispatcher: Dispatcher, receiver: Receiver
    ) -> None:
        admin = await tenant(api)
        endpoint_id = await subscribe(api, admin["token"], receiver, "/down")
        receiver.stop()
        event_id = await send_test(api, admin["token"], endpoint_id)
        await dispatcher.drain()
        failed = await delivery_of(event_id)
        assert failed.attempts >= 1
        assert failed.locked_until is None
        assert failed.status == WebhookDeliveryStatus.PENDING
        assert failed.last_status_code is None
        assert (failed.last_error or "").startswith("Connection failed")
        receiver.start()  # the same port, a new process: it is told the secret again
        endpoint = await WebhookEndpoint.get(id=int(failed.endpoint_id))
        from services.webhook_secrets import SecretCipher

        settings_key = api.app.state.resources.settings.secret_key
        receiver.secrets("/down", SecretCipher(settings_key).open(endpoint.secret_ciphertext, endpoint.id))
        with later(receiver, RETRY_SCHEDULE[0] + RETRY_SCHEDULE[1]):
            await dispatcher.drain()  # the retry is due
        [got] = receiver.received("/down")
        assert got["id"] == event_id
        assert got["verified_with"] == [0]
        await settled(event_id, WebhookDeliveryStatus.SUCCEEDED)

    async def test_the_schedule_spans_about_a_day_then_the_delivery_fails_visibly(
        self, api: Api, dispatcher: Dispatcher
    ) -> None:
        admin = await tenant(api)
        created = await api(
            CREATE, {"input": {"url": "http://127.0.0.1:9/none", "events": ["BALANCE_LOW"]}}, token=admin["token"]
        )
        event_id = await send_test(api, admin["token"], created["data"]["webhookEndpointCreate"]["endpoint"]["id"])
        offset = timedelta(0)
        for attempt, delay in enumerate([*RETRY_SCHEDULE, None], start=1):
            with shifted(offset):
                await dispatcher.drain()  # the next attempt is due
                row = await delivery_of(event_id)
                assert (row.attempts, row.locked_until) == (attempt, None)
                if delay is None:
                    break
                assert row.next_attempt_at is not None
                assert abs((row.next_attempt_at - clock.now()) - delay) < timedelta(seconds=5)
            offset += delay
        assert row.status == WebhookDeliveryStatus.FAILED
        assert row.next_attempt_at is None
        assert row.attempts == len(RETRY_SCHEDULE) + 1
        assert timedelta(hours=24) < sum(RETRY_SCHEDULE, timedelta(0)) < timedelta(hours=30)


class TestFiveDays:
    @pytest.mark.parametrize(
        ("locale", "subject"),
        [("en", "Webhook endpoint disabled"), ("de", "Webhook-Endpunkt deaktiviert"), ("fr", "webhook désactivé")],
    )
    async def test_an_endpoint_failing_for_5_days_is_disabled_and_its_admins_emailed(
        self, api: Api, dispatcher: Dispatcher, insecure: Settings, locale: str, subject: str
    ) -> None:
        admin = await tenant(api, locale=locale)
        url = "http://127.0.0.1:9/dead"
        created = await api(CREATE, {"input": {"url": url, "events": ["BALANCE_LOW"]}}, token=admin["token"])
        endpoint_id = created["data"]["webhookEndpointCreate"]["endpoint"]["id"]
        first = await send_test(api, admin["token"], endpoint_id)
        await dispatcher.drain()
        tried = await delivery_of(first)
        assert tried.attempts >= 1
        assert tried.locked_until is None
        endpoint = await WebhookEndpoint.get(url=url, account__users__email=admin["email"])
        assert endpoint.enabled
        assert endpoint.failing_since is not None

        async def mailed() -> Any:
            for path in insecure.mail_dir.glob("*.eml"):
                message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
                if admin["email"] in str(message["To"]) and url in str(message["Subject"]):
                    return message
            return None

        # when: 5 days later, still failing
        with shifted(timedelta(days=5, minutes=1)):
            await send_test(api, admin["token"], endpoint_id)
            await dispatcher.drain()
            assert not (await WebhookEndpoint.get(id=endpoint.id)).enabled
            # The e-mail's job is queued at the moved time: it runs while the clock is there.
            await run_jobs(api.app)
            message = await mailed()
        # then: what waited fails visibly, and the account's admin has an e-mail in its locale
        assert await WebhookDelivery.filter(endpoint_id=endpoint.id, status=WebhookDeliveryStatus.PENDING).count() == 0
        assert (await delivery_of(first)).status == WebhookDeliveryStatus.FAILED
        assert message is not None
        assert subject in str(message["Subject"])

    async def test_a_success_ends_the_failure_streak(
        self, api: Api, dispatcher: Dispatcher, receiver: Receiver
    ) -> None:
        admin = await tenant(api)
        endpoint_id = await subscribe(api, admin["token"], receiver, "/streak")
        receiver.script("/streak", (503, 0))
        first = await send_test(api, admin["token"], endpoint_id)
        await dispatcher.drain()
        assert len(receiver.received("/streak")) == 1
        endpoint = await WebhookEndpoint.get(url=receiver.url("/streak"))
        assert (await WebhookEndpoint.get(id=endpoint.id)).failing_since is not None
        with later(receiver, timedelta(days=4)):
            await dispatcher.drain()
            assert len(receiver.received("/streak")) == 2  # the retry, long due, succeeds
            assert (await WebhookEndpoint.get(id=endpoint.id)).failing_since is None
        await settled(first, WebhookDeliveryStatus.SUCCEEDED)


class TestRotation:
    async def test_both_secrets_sign_for_24_hours_then_only_the_new_one(
        self, api: Api, dispatcher: Dispatcher, receiver: Receiver
    ) -> None:
        admin = await tenant(api)
        endpoint_id = await subscribe(api, admin["token"], receiver, "/rotate")
        old = receiver.state()  # nothing yet
        assert old["received"] == []
        rotated = (await api(ROTATE, {"id": endpoint_id}, token=admin["token"]))["data"]["webhookEndpointRotateSecret"]
        created_secret = await self._secret_of(api, endpoint_id, previous=True)
        receiver.secrets("/rotate", created_secret, rotated["secret"])
        await send_test(api, admin["token"], endpoint_id)
        await dispatcher.drain()
        [during] = receiver.received("/rotate")
        assert during["signatures"] == 2
        assert during["verified_with"] == [0, 1]
        with later(receiver, timedelta(hours=24, minutes=1)):
            await send_test(api, admin["token"], endpoint_id)
            await dispatcher.drain()
        after = receiver.received("/rotate")[1]
        assert after["signatures"] == 1
        assert after["verified_with"] == [1]

    @staticmethod
    async def _secret_of(api: Api, endpoint_id: str, *, previous: bool) -> str:
        from base64 import b64decode

        from services.webhook_secrets import SecretCipher

        pk = int(b64decode(endpoint_id).decode().split(":")[1])
        endpoint = await WebhookEndpoint.get(id=pk)
        key = api.app.state.resources.settings.secret_key
        sealed = endpoint.previous_secret_ciphertext if previous else endpoint.secret_ciphertext
        assert sealed is not None
        return SecretCipher(key).open(sealed, pk)


class TestIsolation:
    async def test_a_slow_endpoint_never_delays_another_endpoints_deliveries(
        self, api: Api, dispatcher: Dispatcher, receiver: Receiver
    ) -> None:
        admin = await tenant(api)
        slow = await subscribe(api, admin["token"], receiver, "/slow")
        fast = await subscribe(api, admin["token"], receiver, "/fast")
        receiver.script("/slow", *[(200, 4.0)] * 6)
        for _ in range(6):
            await send_test(api, admin["token"], slow)
        await dispatcher.fill()  # the slow endpoint's deliveries take their slots, each answered in 4 s
        # when: the slow endpoint holds its slots, an event for the other one comes
        await send_test(api, admin["token"], fast)
        await dispatcher.fill()  # the dispatcher's next look, as its loop takes one each POLL_SECONDS
        await dispatcher.drain()
        [got] = receiver.received("/fast")
        slow_first = receiver.received("/slow")[0]
        # then: it arrived while the slow one still answered its first requests
        assert got["at"] - slow_first["at"] < 4.0
        assert got["verified_with"] == [0]
        assert len(receiver.received("/slow")) == 6
        assert receiver.state()["most_in_flight"]["/slow"] <= 2  # workers.webhooks.PER_ENDPOINT
