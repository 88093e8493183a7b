"""voucherOrders reads its page in one statement: it answers exactly what the per-field loaders answer."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from infra import clock
from models import Voucher, VoucherStatus
from tests.support.api import Api
from tests.support.factories import line, order, partner
from tests.support.running import run_jobs

SHOWN = """fragment Shown on VoucherOrder {
  id number customerName notes status paymentMethod total { amount currencyCode } createdAt voucherCount
  lines { position productCode productName quantity validityYears fqdns wildcards
          unitPrice { amount currencyCode } linePrice { amount } }
  statusCounts { validUnused validUsed expired cancelled total }
  cancellable cancelBlockers { code message }
  vouchers(first: 3) {
    totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id code status expiresAt createdAt usedAt } }
  }
  unused: vouchers(first: 2, filter: {status: VALID_UNUSED}) { totalCount edges { node { id status } } }
  expired: vouchers(first: 5, filter: $expired) { totalCount edges { node { id status } } }
  later: vouchers(first: 2, after: $after) { pageInfo { hasNextPage hasPreviousPage } edges { node { id } } }
  history(first: 3) {
    totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id kind actor createdAt details } }
  }
  older: history(first: 2, after: $event) { edges { node { kind actor } } }
  pdf { status generatedAt error }
}"""

LISTED = (
    """query Listed($expired: VoucherFilter, $after: String, $event: String) {
  voucherOrders(first: 10) { totalCount edges { node { ...Shown } } } }
"""
    + SHOWN
)

BY_ID = (
    """query ById($ids: [ID!]!, $expired: VoucherFilter, $after: String, $event: String) {
  nodes(ids: $ids) { ...Shown } }
"""
    + SHOWN
)

API_KEY_CREATE = """mutation K($input: ApiKeyCreateInput!) { apiKeyCreate(input: $input) { secret errors { code } } }"""
REVEAL = """mutation R($input: VoucherCodesRevealInput!) { voucherCodesReveal(input: $input) { errors { code } } }"""
CANCEL = """mutation C($input: VoucherOrderCancelInput!) { voucherOrderCancel(input: $input) { errors { code } } }"""
PAGE = """query P($first: Int, $after: String, $last: Int, $before: String) {
  voucherOrders(first: $first, after: $after, last: $last, before: $before) {
    totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor } edges { cursor node { number } } } }"""


async def _orders_of_every_kind(api: Api) -> tuple[dict[str, Any], list[str]]:
    """Orders with used, expired (stored and past due), cancelled vouchers, and history by a user and a key."""
    p = await partner(api)
    ids = []
    for i, quantity in enumerate((4, 7, 2, 5)):
        placed = await order(
            api,
            p["token"],
            line("BASIC_OV", quantity),
            line("SECURE_SITE_OV", 1),
            customerName=f"C{i}",
            paymentMethod="ACCOUNT_BALANCE",
        )
        assert placed["errors"] == [], placed
        ids.append(placed["order"]["id"])
    secret = (await api(API_KEY_CREATE, {"input": {"name": "erp"}}, token=p["token"]))["data"]["apiKeyCreate"]["secret"]
    assert (await api(REVEAL, {"input": {"orderId": ids[1]}}, token=secret))["data"]["voucherCodesReveal"][
        "errors"
    ] == []
    assert (await api(REVEAL, {"input": {"orderId": ids[1]}}, token=p["token"]))["data"]["voucherCodesReveal"][
        "errors"
    ] == []
    assert (await api(CANCEL, {"input": {"orderId": ids[3]}}, token=p["token"]))["data"]["voucherOrderCancel"][
        "errors"
    ] == []
    # Each order's PDF is rendered (and recorded in the history) before the reads, so both see the same orders.
    await run_jobs(api.app)
    assert await _pdfs_ready(api, p["token"], ids)
    vouchers = await Voucher.filter(account_id=p["account_id"]).order_by("id")
    now = clock.now()
    await Voucher.filter(id=vouchers[0].id).update(status=VoucherStatus.VALID_USED, used_at=now)
    await Voucher.filter(id=vouchers[1].id).update(expires_at=now - timedelta(seconds=1))  # due, not yet swept
    await Voucher.filter(id=vouchers[5].id).update(status=VoucherStatus.EXPIRED)
    return p, ids


async def _pdfs_ready(api: Api, token: str, ids: list[str]) -> bool:
    result = await api(
        "query($ids: [ID!]!) { nodes(ids: $ids) { ... on VoucherOrder { pdf { status } } } }", {"ids": ids}, token=token
    )
    return all(node["pdf"]["status"] == "READY" for node in result["data"]["nodes"])


class TestOrderPage:
    async def test_answers_what_the_loaders_answer(self, burst_api: Api) -> None:
        api = burst_api
        p, ids = await _orders_of_every_kind(api)
        # A voucher cursor and an event cursor that fall inside some orders' pages.
        first_page = await api(BY_ID, {"ids": ids[:2], "expired": {"status": "EXPIRED"}}, token=p["token"])
        voucher_cursor = first_page["data"]["nodes"][0]["vouchers"]["edges"][1]["cursor"]
        event_cursor = first_page["data"]["nodes"][1]["history"]["edges"][0]["cursor"]
        variables = {"expired": {"status": "EXPIRED"}, "after": voucher_cursor, "event": event_cursor}

        listed = await api(LISTED, variables, token=p["token"])
        by_id = await api(BY_ID, {"ids": ids[::-1], **variables}, token=p["token"])

        assert "errors" not in listed, listed
        assert "errors" not in by_id, by_id
        nodes = [edge["node"] for edge in listed["data"]["voucherOrders"]["edges"]]
        assert nodes == by_id["data"]["nodes"]
        assert listed["data"]["voucherOrders"]["totalCount"] == 4
        # What the data set holds, so the comparison covers every branch.
        assert {n["statusCounts"]["validUsed"] for n in nodes} >= {1}
        assert sum(n["statusCounts"]["expired"] for n in nodes) == 2
        assert nodes[0]["status"] == "CANCELLED"
        assert nodes[0]["statusCounts"]["cancelled"] == 6
        actors = {e["node"]["actor"] for n in nodes for e in n["history"]["edges"]}
        assert {p["email"], "API key erp"} <= actors
        assert any(n["later"]["edges"] for n in nodes)
        assert any(n["older"]["edges"] for n in nodes)

    async def test_pages_forwards_and_backwards_with_the_total_on_every_page(self, api: Api) -> None:
        p = await partner(api)
        numbers = []
        for _ in range(5):
            numbers.append((await order(api, p["token"], paymentMethod="ACCOUNT_BALANCE"))["order"]["number"])
        newest_first = numbers[::-1]

        async def page(**variables: Any) -> dict[str, Any]:
            result = await api(PAGE, variables, token=p["token"])
            assert "errors" not in result, result
            return dict(result["data"]["voucherOrders"])

        first = await page(first=2)
        assert [e["node"]["number"] for e in first["edges"]] == newest_first[:2]
        assert first["pageInfo"]["hasNextPage"]
        assert not first["pageInfo"]["hasPreviousPage"]
        rest = await page(first=10, after=first["pageInfo"]["endCursor"])
        assert [e["node"]["number"] for e in rest["edges"]] == newest_first[2:]
        assert not rest["pageInfo"]["hasNextPage"]
        assert rest["pageInfo"]["hasPreviousPage"]
        last = await page(last=2)
        assert [e["node"]["number"] for e in last["edges"]] == newest_first[-2:]
        before = await page(last=2, before=last["pageInfo"]["startCursor"])
        assert [e["node"]["number"] for e in before["edges"]] == newest_first[1:3]
        assert before["pageInfo"]["hasPreviousPage"]
        assert before["pageInfo"]["hasNextPage"]
        empty = await page(first=5, after=rest["pageInfo"]["endCursor"])
        assert empty["edges"] == []
        assert empty["pageInfo"]["endCursor"] is None
        assert {first["totalCount"], rest["totalCount"], last["totalCount"], empty["totalCount"]} == {5}

    async def test_a_bad_nested_argument_is_refused_as_before(self, api: Api) -> None:
        p = await partner(api)
        await order(api, p["token"], paymentMethod="ACCOUNT_BALANCE")
        result = await api(
            '{ voucherOrders { edges { node { vouchers(after: "bm90IGEgY3Vyc29y") { totalCount } } } } }',
            token=p["token"],
        )
        assert result["errors"][0]["message"] == "Invalid cursor."

    async def test_page_cursors_without_edge_cursors(self, api: Api) -> None:
        p = await partner(api)
        placed = await order(api, p["token"], line("BASIC_OV", 5), paymentMethod="ACCOUNT_BALANCE")
        shown = (
            "vouchers(first: 2, after: $after) { pageInfo { hasNextPage startCursor endCursor } edges { node { id } } }"
        )
        listed = f"query($after: String) {{ voucherOrders {{ edges {{ node {{ {shown} }} }} }} }}"
        by_id = (
            f'query($after: String) {{ node(id: "{placed["order"]["id"]}") {{ ... on VoucherOrder {{ {shown} }} }} }}'
        )
        ids: list[str] = []
        after = None
        for _ in range(3):
            page = (await api(listed, {"after": after}, token=p["token"]))["data"]["voucherOrders"]["edges"][0]
            same = (await api(by_id, {"after": after}, token=p["token"]))["data"]["node"]
            assert page["node"] == same
            ids += [e["node"]["id"] for e in same["vouchers"]["edges"]]
            after = same["vouchers"]["pageInfo"]["endCursor"]
        assert len(set(ids)) == 5
        assert same["vouchers"]["pageInfo"]["hasNextPage"] is False
