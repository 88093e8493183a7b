"""The response cache: polling dashboards are served from Redis, and never a stale, foreign or failed answer."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from strawberry.relay import GlobalID

from infra import clock
from models import PdfStatus, Voucher, VoucherOrder
from services import expiry
from settings import Settings
from tests.support.api import Api
from tests.support.factories import deposit, line, member, order, partner, tenant
from tests.support.running import run_jobs
from tests.support.statements import statements_for
from web.graphql import VouchsafeGraphQL

ORDER = """query O($id: ID!) { node(id: $id) { ... on VoucherOrder {
  status csvUrl statusCounts { validUnused validUsed expired cancelled }
  history(first: 1) { edges { node { kind } } } } } }"""
VIEWER = """query { viewer { user { email role } account { name balance { amount } } } }"""
ORDERS = """query L($n: Int!) { voucherOrders(first: $n) { edges { node { id } } } }"""
REVEAL = """mutation R($id: ID!) { voucherCodesReveal(input: {orderId: $id}) { codes { code } errors { code } } }"""
REDEEM = """mutation R($input: VoucherRedeemInput!) { voucherRedeem(input: $input) { errors { code } } }"""
CANCEL = """mutation C($id: ID!) { voucherOrderCancel(input: {orderId: $id}) { errors { code } } }"""


async def placed(api: Api, token: str, quantity: int = 2) -> dict[str, Any]:
    result = await order(api, token, line("BASIC_OV", quantity), paymentMethod="ACCOUNT_BALANCE")
    assert result["errors"] == [], result
    return dict(result["order"])


async def read(api: Api, query: str, token: str, **variables: Any) -> dict[str, Any]:
    result = await api(query, variables, token=token)
    assert "errors" not in result, result
    return dict(result["data"])


async def answers(api: Any, settings: Settings) -> int:
    redis = api.app.state.resources.redis
    return len([key async for key in redis.scan_iter(match=f"{settings.queue_name}:answer:*")])


async def test_a_repeated_dashboard_is_answered_without_the_database(burst_api: Api) -> None:
    api = burst_api
    p = await partner(api)
    made = [await placed(api, p["token"]) for _ in range(3)]
    ids = [GlobalID.from_id(o["id"]).node_id for o in made]
    # The PDFs are rendered first: a PDF_READY between the two reads would change the answer.
    await run_jobs(api.app)
    assert await VoucherOrder.filter(id__in=ids, pdf_status=PdfStatus.READY).count() == len(ids)
    cold, first = await statements_for(api, p["token"], 20, 50)
    warm, second = await statements_for(api, p["token"], 20, 50)
    assert second == first
    assert warm <= 1 < cold  # only the session lookup is left


async def test_never_stale_after_a_change_the_query_shows(api: Api) -> None:
    p = await partner(api)
    customer = await tenant(api)
    mine = await placed(api, p["token"])
    other = await placed(api, p["token"], 1)
    seen = await read(api, ORDER, p["token"], id=mine["id"])
    assert seen == await read(api, ORDER, p["token"], id=mine["id"])  # now cached

    # the tenant's own mutation
    codes = (await read(api, REVEAL, p["token"], id=mine["id"]))["voucherCodesReveal"]["codes"]
    # in the history at all, not first: the worker's PDF_READY may land after the reveal
    history = (await read(api, ORDER, p["token"], id=mine["id"]))["node"]["history"]["edges"]
    assert "CODES_REVEALED" in [e["node"]["kind"] for e in history]
    # another tenant's mutation that changes what the owner sees
    redeemed = await read(
        api, REDEEM, customer["token"], input={"code": codes[0]["code"], "commonName": "c.example.com"}
    )
    assert redeemed["voucherRedeem"]["errors"] == []
    assert (await read(api, ORDER, p["token"], id=mine["id"]))["node"]["statusCounts"]["validUsed"] == 1
    # a change no request made: the expiry sweep (the worker's job)
    await read(api, ORDER, p["token"], id=other["id"])
    due = clock.now() - timedelta(minutes=1)
    await Voucher.filter(order_id=GlobalID.from_id(other["id"]).node_id).update(expires_at=due)
    assert await expiry.expire_due(bus=api.bus) >= 1
    counts = (await read(api, ORDER, p["token"], id=other["id"]))["node"]["statusCounts"]
    assert counts["expired"] == 1
    assert counts["validUnused"] == 0
    # and a staff change to the account's balance
    before = (await read(api, VIEWER, p["token"]))["viewer"]["account"]["balance"]["amount"]
    funded = await deposit(api, p["token"], "10.00")
    assert funded["errors"] == []
    assert (await read(api, VIEWER, p["token"]))["viewer"]["account"]["balance"]["amount"] != before


async def test_never_across_tenants_users_or_roles(api: Api) -> None:
    a, b = await partner(api, accountName="Alpha"), await partner(api, accountName="Beta")
    a_member = await member(api, a["token"], "MEMBER")
    a_order = await placed(api, a["token"])
    for _ in range(2):  # the second round is served from the cache
        assert (await read(api, VIEWER, a["token"]))["viewer"]["account"]["name"] == "Alpha"
        assert (await read(api, VIEWER, b["token"]))["viewer"]["account"]["name"] == "Beta"
        assert (await read(api, VIEWER, a_member))["viewer"]["user"]["role"] == "MEMBER"
        assert (await read(api, ORDER, a["token"], id=a_order["id"]))["node"]["csvUrl"]
        assert (await read(api, ORDER, a_member, id=a_order["id"]))["node"]["csvUrl"] is None  # MEMBERs get no link
        assert (await read(api, ORDER, b["token"], id=a_order["id"]))["node"] is None


async def test_never_mutations_or_errors(api: Api, settings: Settings) -> None:
    p = await partner(api, balance="100.00")
    for expected in ("110.00", "120.00"):  # the same mutation twice runs twice
        funded = await deposit(api, p["token"], "10.00", idempotencyKey=None)
        assert funded["account"]["balance"]["amount"] == expected
    stored = await answers(api, settings)
    for _ in range(2):  # an answer with an error is never stored
        failed = await api(ORDERS, {"n": 1000}, token=p["token"])
        assert failed["errors"]
    assert await answers(api, settings) == stored
    await read(api, ORDERS, p["token"], n=5)
    assert await answers(api, settings) == stored + 1


async def test_a_cancel_by_another_user_of_the_tenant_is_seen_at_once(api: Api) -> None:
    p = await partner(api)
    finance = await member(api, p["token"], "FINANCE")
    mine = await placed(api, p["token"])
    assert (await read(api, ORDER, p["token"], id=mine["id"]))["node"]["status"] == "ACTIVE"
    assert (await read(api, CANCEL, finance, id=mine["id"]))["voucherOrderCancel"]["errors"] == []
    assert (await read(api, ORDER, p["token"], id=mine["id"]))["node"]["status"] == "CANCELLED"


async def test_a_polled_answer_is_sent_before_graphql_runs(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    p = await partner(api)
    await placed(api, p["token"])
    contexts: list[object] = []
    original = VouchsafeGraphQL.get_context

    async def counted(self: VouchsafeGraphQL, request: Any, response: Any) -> Any:
        contexts.append(request)
        return await original(self, request, response)

    monkeypatch.setattr(VouchsafeGraphQL, "get_context", counted)
    first = await read(api, VIEWER, p["token"])
    assert len(contexts) == 1  # computed by GraphQL, then stored
    headers = {"Authorization": f"Bearer {p['token']}"}
    polled = await api.http.post("/graphql", json={"query": VIEWER}, headers=headers)
    assert polled.status_code == 200
    assert polled.headers["content-type"] == "application/json"
    assert polled.headers["x-request-id"]
    assert polled.json() == {"data": first}
    assert len(contexts) == 1  # the stored bytes, no GraphQL work

    # the session is still checked on every poll: signed out, the stored answer is not sent
    assert (await read(api, "mutation { signOut { errors { code } } }", p["token"]))["signOut"]["errors"] == []
    after = await api.http.post("/graphql", json={"query": VIEWER}, headers=headers)
    assert "data" not in after.json() or after.json()["data"] != first
    assert len(contexts) == 3
