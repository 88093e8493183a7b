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

import json
from datetime import timedelta

from infra import clock
from models import Voucher, VoucherOrder, WebhookDelivery
from services import expiry
from tests.support.api import Api
from tests.support.factories import deposit, line, order, partner, tenant
from tests.support.running import run_jobs
from tests.support.webhook_flows import CANCEL, NODE, REDEEM, RELEASE, REVEAL, THRESHOLD, send_test, subscribe
from tests.support.webhook_receiver import Receiver
from workers.webhooks import Dispatcher


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
