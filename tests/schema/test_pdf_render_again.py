"""voucherOrderPdfRender: the owner's ADMIN or FINANCE and staff render an order's PDF again, with today's links."""

from __future__ import annotations

import asyncio
import io
from dataclasses import replace
from typing import Any

from pypdf import PdfReader
from strawberry.relay import GlobalID

from models import OrderEvent, OrderEventKind, PdfStatus, VoucherOrder
from services import staff
from settings import Settings
from tests.support.api import Api, without_worker
from tests.support.factories import PASSWORD, line, member, order, partner, sign_in, tenant, unique_email
from tests.support.orders import stored_pdf
from tests.support.running import run_jobs

RENDER = """mutation R($id: ID!) { voucherOrderPdfRender(input: {orderId: $id}) {
  order { id pdf { status } } errors { code field message } } }"""
CANCEL = """mutation C($id: ID!) { voucherOrderCancel(input: {orderId: $id}) { errors { code } } }"""
PDF = """query P($id: ID!) { node(id: $id) { ... on VoucherOrder { pdf { status generatedAt } } } }"""
HISTORY = """query H($id: ID!) { node(id: $id) { ... on VoucherOrder {
  history(first: 20) { edges { node { kind actor } } } } } }"""
OLD, NEW = "http://old.example:8000", "http://vouchers.example:18777"


async def rendered(api: Api, token: str, order_id: str, *, after: str | None = None) -> dict[str, Any]:
    """The order's PDF once its jobs have run: READY (and generated after `after`, when given)."""
    await run_jobs(api.app)
    pdf: dict[str, Any] = (await api(PDF, {"id": order_id}, token=token))["data"]["node"]["pdf"]
    assert pdf["status"] == "READY", pdf
    assert after is None or pdf["generatedAt"] > after, (pdf, after)
    return pdf


def links(data: bytes) -> list[str]:
    """Every link annotation's URI in the PDF."""
    found = []
    for page in PdfReader(io.BytesIO(data)).pages:
        for annotation in page.get("/Annots") or []:
            action = annotation.get_object().get("/A")
            if action and "/URI" in action:
                found.append(str(action["/URI"]))
    return found


async def placed(api: Api, token: str, quantity: int = 2) -> str:
    result = await order(api, token, line(quantity=quantity), paymentMethod="ACCOUNT_BALANCE")
    assert result["errors"] == [], result
    return str(result["order"]["id"])


def pk(order_id: str) -> int:
    return int(GlobalID.from_id(order_id).node_id)


async def test_a_ready_pdf_is_rendered_again_with_todays_links_and_the_history_says_who(settings: Settings) -> None:
    # given: an order whose PDF was rendered while the public URL was another
    async with without_worker(replace(settings, public_url=OLD)) as api:
        seller = await partner(api)
        order_id = await placed(api, seller["token"])
        first = await rendered(api, seller["token"], order_id)
        before = await stored_pdf(await VoucherOrder.get(id=pk(order_id)), settings)
        assert len(links(before)) == 2
        assert all(link.startswith(f"{OLD}/redeem/VS-") for link in links(before))
    # when: FINANCE asks for it again, on the server that is reached at the new address
    async with without_worker(replace(settings, public_url=NEW)) as api:
        finance = await member(api, seller["token"], "FINANCE")
        answer = (await api(RENDER, {"id": order_id}, token=finance))["data"]["voucherOrderPdfRender"]
        assert answer == {"order": {"id": order_id, "pdf": {"status": "PENDING"}}, "errors": []}
        await rendered(api, seller["token"], order_id, after=first["generatedAt"])
        # then: the stored PDF is replaced: the same codes, today's links
        after = await stored_pdf(await VoucherOrder.get(id=pk(order_id)), settings)
        assert [link.rsplit("/", 1)[1] for link in links(after)] == [link.rsplit("/", 1)[1] for link in links(before)]
        assert all(link.startswith(f"{NEW}/redeem/VS-") for link in links(after))
        # and the history records who asked, then the new PDF
        history = (await api(HISTORY, {"id": order_id}, token=seller["token"]))["data"]["node"]["history"]
        kinds = [e["node"]["kind"] for e in history["edges"]]
        requested = kinds.index("PDF_RENDER_REQUESTED")
        asker = history["edges"][requested]["node"]["actor"]
        assert asker.startswith("finance-")
        assert asker != seller["email"]
        assert kinds.count("PDF_READY") == 2
        assert kinds.index("PDF_READY") < requested


async def test_who_may_ask_members_and_strangers_may_not_staff_may(burst_api: Api) -> None:
    api = burst_api
    seller = await partner(api)
    order_id = await placed(api, seller["token"], 1)
    await rendered(api, seller["token"], order_id)
    # a MEMBER of the owner: refused; another tenant: the order does not exist for it
    for token, code in (
        (await member(api, seller["token"], "MEMBER"), "PERMISSION_DENIED"),
        ((await tenant(api))["token"], "NOT_FOUND"),
    ):
        answer = (await api(RENDER, {"id": order_id}, token=token))["data"]["voucherOrderPdfRender"]
        assert (answer["order"], [e["code"] for e in answer["errors"]]) == (None, [code])
    assert await OrderEvent.filter(order_id=pk(order_id), kind=OrderEventKind.PDF_RENDER_REQUESTED).count() == 0
    # staff may, for any tenant's order
    email = unique_email("staff")
    await staff.create_staff(email=email, password=PASSWORD)
    staff_token = await sign_in(api, email)
    answer = (await api(RENDER, {"id": order_id}, token=staff_token))["data"]["voucherOrderPdfRender"]
    assert answer["errors"] == []
    assert answer["order"]["pdf"]["status"] == "PENDING"
    [event] = await OrderEvent.filter(order_id=pk(order_id), kind=OrderEventKind.PDF_RENDER_REQUESTED)
    assert event.data == {"previous": "READY", "by_staff": True}
    await rendered(api, seller["token"], order_id)


async def test_refused_while_rendering_and_for_a_cancelled_order_and_only_one_of_two_at_once(burst_api: Api) -> None:
    api = burst_api
    seller = await partner(api)
    order_id = await placed(api, seller["token"], 1)
    await rendered(api, seller["token"], order_id)
    # two requests at once: one wins the compare-and-set, the other hears a render is in progress
    answers = await asyncio.gather(*(api(RENDER, {"id": order_id}, token=seller["token"]) for _ in range(2)))
    codes = sorted(str([e["code"] for e in a["data"]["voucherOrderPdfRender"]["errors"]]) for a in answers)
    assert codes == ["['PDF_RENDER_IN_PROGRESS']", "[]"]
    assert await OrderEvent.filter(order_id=pk(order_id), kind=OrderEventKind.PDF_RENDER_REQUESTED).count() == 1
    await rendered(api, seller["token"], order_id)
    # a cancelled order: refused with its own code, nothing recorded or queued
    assert (await api(CANCEL, {"id": order_id}, token=seller["token"]))["data"]["voucherOrderCancel"]["errors"] == []
    answer = (await api(RENDER, {"id": order_id}, token=seller["token"]))["data"]["voucherOrderPdfRender"]
    assert [(e["code"], e["field"]) for e in answer["errors"]] == [("ORDER_CANCELLED", ["input", "orderId"])]
    assert (await VoucherOrder.get(id=pk(order_id))).pdf_status == PdfStatus.READY
    assert await OrderEvent.filter(order_id=pk(order_id), kind=OrderEventKind.PDF_RENDER_REQUESTED).count() == 1
