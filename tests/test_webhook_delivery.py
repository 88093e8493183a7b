"""Webhooks delivered for real: a receiver process on loopback verifies every request with `standardwebhooks`.

The app runs its worker in-process (embedded), or one on the run's Redis; its webhook
dispatcher sends what the API's changes wrote. Time-dependent rules (the retry
schedule, the 5-day rule, the rotation overlap) move infra.clock, which the
dispatcher reads too; the webhook-timestamp header stays the real time, as the
receiver's library checks it against its own clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from strawberry.relay import GlobalID

from infra import clock
from models import Voucher, VoucherOrder, WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint
from services import expiry
from services.webhook_delivery import RETRY_SCHEDULE
from settings import Settings
from tests.support.api import Api, loopback_client
from tests.support.factories import deposit, line, order, partner, tenant
from tests.support.running import running_worker, shifted, until_announced, wait_for
from tests.support.webhook_receiver import Receiver

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
WAIT = 30.0


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
    from server import create_app

    app = create_app(insecure)
    async with app.router.lifespan_context(app), running_worker(insecure):
        transport = httpx.ASGITransport(app=app, client=loopback_client())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield Api(http)


async def subscribe(api: Api, token: str, receiver: Receiver, path: str, events: list[str] = ALL_EVENTS) -> str:
    """An endpoint of the token's account at the receiver's path; the receiver verifies with its secret."""
    result = await api(CREATE, {"input": {"url": receiver.url(path), "events": events}}, token=token)
    created = result["data"]["webhookEndpointCreate"]
    assert created["errors"] == [], created
    receiver.secrets(path, created["secret"])
    return str(created["endpoint"]["id"])


async def received(receiver: Receiver, path: str, count: int, *, within: float = WAIT) -> list[dict[str, Any]]:
    async def enough() -> list[dict[str, Any]] | None:
        got = receiver.received(path)
        return got if len(got) >= count else None

    # Polled: the app's worker delivers to the receiver, another process.
    return list(await wait_for(enough, within=within, interval=0.1))


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
    """The delivery once recorded so (the receiver may have it a moment before its sender records it)."""

    async def reached() -> WebhookDelivery | None:
        row = await delivery_of(event_id)
        return row if row.status == status and row.locked_until is None else None

    # Polled: the app's worker delivers to the receiver, another process.
    return await wait_for(reached, within=WAIT)


async def send_test(api: Api, token: str, endpoint_id: str) -> str:
    tested = (await api(TEST, {"id": endpoint_id}, token=token))["data"]["webhookEndpointTest"]
    assert tested["errors"] == []
    return str(tested["delivery"]["eventId"])


class TestEveryEvent:
    async def test_each_event_type_reaches_the_owner_signed_and_no_other_tenant(
        self, api: Api, receiver: Receiver
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

        ids = [int(GlobalID.from_id(o["id"]).node_id) for o in (first, second)]
        # The worker stays: it also delivers the webhooks. Its PDF_READY events announce the PDFs.
        await until_announced(api.app, pdfs_ready, orders=ids, tenant=a["account_id"])
        # the first order's vouchers come to their end (only these: the run's other vouchers stay as they are)
        await Voucher.filter(order__number=first["number"]).update(expires_at=clock.now() - timedelta(seconds=1))
        assert await expiry.expire_due(bus=api.bus) >= 2
        assert (await deposit(api, b["token"], "20.00"))["errors"] == []
        # then: A hears of every type (placed and PDF ready twice), each signed with A's secret
        got = await received(receiver, "/a", 10)
        await asyncio.sleep(1.0)  # nothing more arrives
        got = receiver.received("/a")
        bodies = [json.loads(r["body"]) for r in got]
        types = sorted(body["type"] for body in bodies)
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
        )
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
        [own] = await received(receiver, "/b", 1)
        assert json.loads(own["body"])["type"] == "deposit.succeeded"
        assert own["verified_with"] == [0]
        assert first["number"] not in own["body"]
        assert len(receiver.received("/b")) == 1


class TestRetries:
    async def test_a_500_then_a_200_is_retried_and_delivered_once(self, api: Api, receiver: Receiver) -> None:
        admin = await tenant(api)
        endpoint_id = await subscribe(api, admin["token"], receiver, "/flaky")
        receiver.script("/flaky", (500, 0))
        event_id = await send_test(api, admin["token"], endpoint_id)
        [first] = await received(receiver, "/flaky", 1)
        assert first["status"] == 500
        assert first["id"] == event_id
        assert first["verified_with"] == [0]

        async def retried_later() -> WebhookDelivery | None:
            row = await delivery_of(event_id)
            return row if row.attempts == 1 and row.locked_until is None and row.last_status_code == 500 else None

        # Polled: the app's worker delivers to the receiver, another process.
        pending = await wait_for(retried_later, within=WAIT)
        assert pending.status == WebhookDeliveryStatus.PENDING
        assert pending.next_attempt_at is not None
        assert pending.last_response_body == '{"answer": 500}'
        assert "HTTP 500" in (pending.last_error or "")
        with later(receiver, RETRY_SCHEDULE[0]):
            both = await received(receiver, "/flaky", 2)
        assert [r["status"] for r in both] == [500, 200]
        assert {r["id"] for r in both} == {event_id}
        assert all(r["verified_with"] == [0] for r in both)
        done = await settled(event_id, WebhookDeliveryStatus.SUCCEEDED)
        assert done.attempts == 2
        assert done.last_status_code == 200
        await asyncio.sleep(1.0)
        assert len(receiver.received("/flaky")) == 2  # delivered once: no third request

    async def test_a_receiver_that_is_down_gets_it_when_it_comes_back(self, api: Api, receiver: Receiver) -> None:
        admin = await tenant(api)
        endpoint_id = await subscribe(api, admin["token"], receiver, "/down")
        receiver.stop()
        event_id = await send_test(api, admin["token"], endpoint_id)

        async def refused() -> WebhookDelivery | None:
            row = await delivery_of(event_id)
            return row if row.attempts >= 1 and row.locked_until is None else None

        # Polled: the app's worker delivers to the receiver, another process.
        failed = await wait_for(refused, within=WAIT)
        assert failed.status == WebhookDeliveryStatus.PENDING
        assert failed.last_status_code is None
        assert (failed.last_error or "").startswith("Connection failed")
        receiver.start()  # the same port, a new process: it is told the secret again
        endpoint = await WebhookEndpoint.get(id=int(failed.endpoint_id))
        from services.webhook_secrets import SecretCipher

        settings_key = api.app.state.resources.settings.secret_key
        receiver.secrets("/down", SecretCipher(settings_key).open(endpoint.secret_ciphertext, endpoint.id))
        with later(receiver, RETRY_SCHEDULE[0] + RETRY_SCHEDULE[1]):
            [got] = await received(receiver, "/down", 1)
        assert got["id"] == event_id
        assert got["verified_with"] == [0]
        await settled(event_id, WebhookDeliveryStatus.SUCCEEDED)

    async def test_the_schedule_spans_about_a_day_then_the_delivery_fails_visibly(self, api: Api) -> None:
        admin = await tenant(api)
        created = await api(
            CREATE, {"input": {"url": "http://127.0.0.1:9/none", "events": ["BALANCE_LOW"]}}, token=admin["token"]
        )
        event_id = await send_test(api, admin["token"], created["data"]["webhookEndpointCreate"]["endpoint"]["id"])
        offset = timedelta(0)
        for attempt, delay in enumerate([*RETRY_SCHEDULE, None], start=1):

            async def attempted(n: int = attempt) -> WebhookDelivery | None:
                row = await delivery_of(event_id)
                return row if row.attempts == n and row.locked_until is None else None

            with shifted(offset):
                # Polled: the app's worker delivers to the receiver, another process.
                row = await wait_for(attempted, within=WAIT)
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
        self, api: Api, insecure: Settings, locale: str, subject: str
    ) -> None:
        admin = await tenant(api, locale=locale)
        url = "http://127.0.0.1:9/dead"
        created = await api(CREATE, {"input": {"url": url, "events": ["BALANCE_LOW"]}}, token=admin["token"])
        endpoint_id = created["data"]["webhookEndpointCreate"]["endpoint"]["id"]
        first = await send_test(api, admin["token"], endpoint_id)

        async def tried(event_id: str) -> bool:
            row = await delivery_of(event_id)
            return row.attempts >= 1 and row.locked_until is None

        # Polled: the app's worker delivers to the receiver, another process.
        await wait_for(lambda: tried(first), within=WAIT)
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

            async def disabled() -> bool:
                return not (await WebhookEndpoint.get(id=endpoint.id)).enabled

            # Polled: the app's worker delivers to the receiver, another process.
            await wait_for(disabled, within=WAIT)
            # The e-mail's job is queued at the moved time: it runs while the clock is there.
            # Polled: the app's worker runs the e-mail job beside its webhook deliveries.
            message = await wait_for(mailed, within=WAIT)
        # then: what waited fails visibly, and the account's admin has an e-mail in its locale
        assert await WebhookDelivery.filter(endpoint_id=endpoint.id, status=WebhookDeliveryStatus.PENDING).count() == 0
        assert (await delivery_of(first)).status == WebhookDeliveryStatus.FAILED
        assert subject in str(message["Subject"])

    async def test_a_success_ends_the_failure_streak(self, api: Api, receiver: Receiver) -> None:
        admin = await tenant(api)
        endpoint_id = await subscribe(api, admin["token"], receiver, "/streak")
        receiver.script("/streak", (503, 0))
        first = await send_test(api, admin["token"], endpoint_id)
        await received(receiver, "/streak", 1)
        endpoint = await WebhookEndpoint.get(url=receiver.url("/streak"))

        async def failing() -> bool:
            return (await WebhookEndpoint.get(id=endpoint.id)).failing_since is not None

        # Polled: the app's worker delivers to the receiver, another process.
        await wait_for(failing, within=WAIT)
        with later(receiver, timedelta(days=4)):
            await received(receiver, "/streak", 2)  # the retry, long due, succeeds

            async def healthy() -> bool:
                return (await WebhookEndpoint.get(id=endpoint.id)).failing_since is None

            # Polled: the app's worker delivers to the receiver, another process.
            await wait_for(healthy, within=WAIT)
        await settled(first, WebhookDeliveryStatus.SUCCEEDED)


class TestRotation:
    async def test_both_secrets_sign_for_24_hours_then_only_the_new_one(self, api: Api, receiver: Receiver) -> None:
        admin = await tenant(api)
        endpoint_id = await subscribe(api, admin["token"], receiver, "/rotate")
        old = receiver.state()  # nothing yet
        assert old["received"] == []
        rotated = (await api(ROTATE, {"id": endpoint_id}, token=admin["token"]))["data"]["webhookEndpointRotateSecret"]
        created_secret = await self._secret_of(api, endpoint_id, previous=True)
        receiver.secrets("/rotate", created_secret, rotated["secret"])
        await send_test(api, admin["token"], endpoint_id)
        [during] = await received(receiver, "/rotate", 1)
        assert during["signatures"] == 2
        assert during["verified_with"] == [0, 1]
        with later(receiver, timedelta(hours=24, minutes=1)):
            await send_test(api, admin["token"], endpoint_id)
            after = (await received(receiver, "/rotate", 2))[1]
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
        self, api: Api, receiver: Receiver
    ) -> None:
        admin = await tenant(api)
        slow = await subscribe(api, admin["token"], receiver, "/slow")
        fast = await subscribe(api, admin["token"], receiver, "/fast")
        receiver.script("/slow", *[(200, 4.0)] * 6)
        for _ in range(6):
            await send_test(api, admin["token"], slow)
        await received(receiver, "/slow", 1)
        # when: the slow endpoint holds its slots, an event for the other one comes
        await send_test(api, admin["token"], fast)
        [got] = await received(receiver, "/fast", 1, within=3.0)
        slow_first = receiver.received("/slow")[0]
        # then: it arrived while the slow one still answered its first requests
        assert got["at"] - slow_first["at"] < 4.0
        assert got["verified_with"] == [0]
        await received(receiver, "/slow", 6, within=WAIT)
        assert receiver.state()["most_in_flight"]["/slow"] <= 2  # workers.webhooks.PER_ENDPOINT
