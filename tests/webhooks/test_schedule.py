"""Webhooks over time, delivered for real: retries and their schedule, the 5-day rule, secret rotation.

As tests/webhooks/test_delivery.py: a receiver process verifies every request; the test
sends with the worker's dispatcher; time-dependent rules move the clock (`later`).
"""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta
from typing import Any

import pytest

from infra import clock
from models import WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint
from services.webhook_delivery import RETRY_SCHEDULE
from settings import Settings
from tests.support.api import Api
from tests.support.factories import tenant
from tests.support.running import run_jobs, shifted
from tests.support.webhook_flows import CREATE, ROTATE, delivery_of, later, send_test, settled, subscribe
from tests.support.webhook_receiver import Receiver
from workers.webhooks import Dispatcher


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
