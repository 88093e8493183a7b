"""The webhook tests' documents and steps: subscribe an endpoint, move the clock, read a delivery."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta

from models import WebhookDelivery, WebhookDeliveryStatus
from tests.support.api import Api
from tests.support.running import shifted
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
