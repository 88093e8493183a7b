"""No voucher code in clear at rest: a dump of the whole database, every Redis key and value, the files and logs.

Orders are placed (balance and card, with notes and idempotency keys, a webhook
endpoint listening), their PDFs rendered, codes revealed, the CSV and PDF downloaded,
one code looked up and redeemed, a wrong guess made. Then everything the deployment
keeps is searched (tests.at_rest): no code of the test is found. The same search run
on a PDF stored unsealed finds them all (it can fail).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from strawberry.relay import GlobalID

from infra import database
from models import ORM_APPS, PdfPart, WebhookDelivery
from services import pdf_seal
from services.codes import CodeCipher
from settings import Settings
from tests.support import at_rest
from tests.support.api import Api, without_worker
from tests.support.documents import REDEEM, REVEAL
from tests.support.factories import line, order, partner, tenant
from tests.support.running import run_jobs
from tests.support.stores import ON_POSTGRES, admin_database

BY_CODE = "query Q($code: String!) { voucherByCode(code: $code) { code status } }"
ORDER = """query O($id: ID!) { node(id: $id) { ... on VoucherOrder {
  csvUrl pdf { status url } vouchers(first: 50) { edges { node { code } } } } } }"""
WEBHOOK = """mutation W($input: WebhookEndpointCreateInput!) { webhookEndpointCreate(input: $input) {
  errors { code message } } }"""


@pytest.fixture
async def own_settings(settings: Settings, tmp_path: Path) -> AsyncIterator[Settings]:
    """A database of the test's own, so that its dump holds this test's data only."""
    if ON_POSTGRES:
        async with admin_database() as url:
            await database.migrate(url, apps=ORM_APPS)
            yield replace(settings, database_url=url, webhooks_allow_insecure=True)
        return
    url = f"sqlite://{tmp_path / 'own.sqlite3'}"
    await database.migrate(url, apps=ORM_APPS)
    yield replace(settings, database_url=url, webhooks_allow_insecure=True)


@pytest.fixture
async def own(own_settings: Settings) -> AsyncIterator[tuple[Api, Any]]:
    async with without_worker(own_settings) as api:  # the test runs the jobs (run_jobs)
        yield api, api.app


def local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def everything_stored(settings: Settings, app: Any, logs: str) -> list[bytes]:
    if settings.uses_sqlite:
        blobs = at_rest.sqlite_blobs(Path(settings.database_url.split("://", 1)[1]))
    else:
        blobs = at_rest.postgres_blobs(settings.database_url)
    blobs += await at_rest.redis_blobs(app.state.resources.redis)
    return [*blobs, *at_rest.file_blobs(settings.data_dir), logs.encode()]


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound and never listened on: each delivery is refused at once, and no other process takes it.

    Set up before the app (first in the test's arguments), so it is held until the app has stopped.
    """
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])


async def test_no_code_is_stored_or_logged_in_clear(
    closed_port: int, own: tuple[Api, Any], own_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api, app = own
    # given: a partner listening for webhooks (to a closed port: every delivery is stored and retried)
    seller = await partner(api)
    customer = await tenant(api)
    events = ["VOUCHER_ORDER_PLACED", "VOUCHER_ORDER_PDF_READY", "VOUCHER_REDEEMED"]
    hook = {"url": f"http://127.0.0.1:{closed_port}/hook", "events": events}
    assert (await api(WEBHOOK, {"input": hook}, token=seller["token"]))["data"]["webhookEndpointCreate"]["errors"] == []
    # when: two orders, by balance and by card, with notes and idempotency keys
    placed = [
        await order(
            api, seller["token"], line(quantity=3), paymentMethod="ACCOUNT_BALANCE", idempotencyKey="at-rest-order-1"
        ),
        await order(
            api, seller["token"], line("BASIC_EV", 2), paymentMethod="CREDIT_CARD", cardToken="tok_visa", notes="INV-7"
        ),
    ]
    assert [p["errors"] for p in placed] == [[], []], placed
    ids = [p["order"]["id"] for p in placed]

    await run_jobs(app)  # the PDFs, the e-mails
    nodes = [(await api(ORDER, {"id": order_id}, token=seller["token"]))["data"]["node"] for order_id in ids]
    assert [node["pdf"]["status"] for node in nodes] == ["READY", "READY"]
    # and: the codes revealed, the CSV and the PDF downloaded, one looked up and redeemed, one guessed wrong
    codes: list[str] = []
    for order_id in ids:
        revealed = (await api(REVEAL, {"id": order_id}, token=seller["token"]))["data"]["voucherCodesReveal"]
        assert revealed["errors"] == []
        codes += [c["code"] for c in revealed["codes"]]
    assert len(codes) == 5
    pdfs = []
    for node in nodes:
        csv = await api.http.get(local(node["csvUrl"]))
        assert csv.status_code == 200
        assert sum(code in csv.text for code in codes) in (2, 3)
        pdf = await api.http.get(local(node["pdf"]["url"]))
        assert pdf.status_code == 200
        assert pdf.content.startswith(b"%PDF-")
        pdfs.append(pdf.content)
    looked_up = (await api(BY_CODE, {"code": codes[0]}, token=customer["token"]))["data"]["voucherByCode"]
    assert looked_up["status"] == "VALID_UNUSED"
    guess = codes[1][:-1] + ("0" if codes[1][-1] != "0" else "1")
    assert (await api(BY_CODE, {"code": guess}, token=customer["token"]))["data"]["voucherByCode"] is None
    # a client's mistake that the answer echoes (a code where an object belongs): its debug log line does not
    echoed = await api(REDEEM, {"input": [codes[2]]}, token=customer["token"])
    assert echoed["data"] is None
    assert codes[2] in echoed["errors"][0]["message"]
    redeem = {"code": codes[0], "commonName": "shop.example.com"}
    redeemed = (await api(REDEEM, {"input": redeem}, token=customer["token"]))["data"]["voucherRedeem"]
    assert redeemed["errors"] == [], redeemed

    # then: no code anywhere in the database, Redis, the data directory or the logs
    stored = await everything_stored(own_settings, app, caplog.text)
    assert at_rest.codes_found(codes, stored) == set()
    # (what was searched holds the idempotency record, the webhook deliveries and the sealed PDF parts)
    assert any(b"at-rest-order-1" in blob for blob in stored)
    assert await WebhookDelivery.all().count() >= 3
    assert await PdfPart.all().count() >= 2

    # self-check: the same search finds every code in the PDFs as downloaded (links escaped as VS\055...)
    assert at_rest.codes_found(codes, pdfs) == set(codes)
    # and in the database once an order's PDF is stored unsealed, as it was before migration 0009
    order_id = GlobalID.from_id(ids[1]).node_id
    cipher = CodeCipher(own_settings.code_key)
    for part in await PdfPart.filter(order_id=order_id):
        clear = pdf_seal.open_part(cipher, part.order_id, part.part, bytes(part.data))
        await PdfPart.filter(id=part.id).update(data=clear)
    assert at_rest.codes_found(codes, await everything_stored(own_settings, app, "")) == set(codes[3:])
