"""Voucher orders through the API: quotes, placing, reading, reveal, limits."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import pytest

from models import Account, LedgerEntry, Voucher, VoucherOrder
from services.orders import CUSTOMER_NAME_MAX, NOTES_MAX
from tests.support.api import Api
from tests.support.factories import ORDER_CREATE, line, member, order, partner, request_outbox_rows, sign_in, tenant
from tests.support.running import shifted

MASKED = re.compile(r"^VS-•••••-•••••-•••••-[0-9A-HJKMNP-TV-Z]{5}$")
QUOTE = """query Q($input: VoucherQuoteInput!) { voucherQuote(input: $input) {
  lines { product { code } quantity unitPrice { amount } linePrice { amount } } total { amount currencyCode }
  errors { code field message } } }"""
PRODUCTS = "{ products { code name validityYears maxWildcards isEv pricePerYear { base { amount } } } }"
ORDER = """query O($id: ID!) { node(id: $id) { ... on VoucherOrder {
  number status customerName notes paymentMethod total { amount }
  lines { productName quantity validityYears fqdns wildcards unitPrice { amount } linePrice { amount } }
  statusCounts { validUnused validUsed expired cancelled total }
  vouchers(first: 3) { totalCount pageInfo { hasNextPage endCursor } edges { node { id code status expiresAt } } }
  history { edges { node { kind actor details } } }
  cancellable cancelBlockers { code }
} } }"""
REVEAL = """mutation R($input: VoucherCodesRevealInput!) { voucherCodesReveal(input: $input) {
  codes { code voucher { id code } } errors { code field } } }"""


async def balance_of(account_id: int) -> int:
    return (await Account.get(id=account_id)).balance


class TestCatalogue:
    async def test_default_products_are_seeded(self, api: Api) -> None:
        products = {p["code"]: p for p in (await api(PRODUCTS))["data"]["products"]}
        assert set(products) == {"BASIC_OV", "BASIC_EV", "SECURE_SITE_OV", "SECURE_SITE_EV"}
        assert products["BASIC_EV"]["maxWildcards"] == 0
        assert products["BASIC_EV"]["isEv"] is True
        assert products["BASIC_OV"]["pricePerYear"]["base"]["amount"] == "175.00"

    async def test_quote_prices_each_line(self, api: Api) -> None:
        lines = [line("BASIC_OV", 3, 2, fqdns=3, wildcards=1), line("SECURE_SITE_EV", 1, 1, fqdns=1)]
        quote = (await api(QUOTE, {"input": {"lines": lines}}))["data"]["voucherQuote"]
        # Basic OV, 2 years: (175 + 2 x 75 + 1 x 450) x 2 = 1,550.00 a voucher
        assert quote["lines"][0]["unitPrice"]["amount"] == "1550.00"
        assert quote["lines"][0]["linePrice"]["amount"] == "4650.00"
        assert quote["lines"][1]["linePrice"]["amount"] == "995.00"
        assert quote["total"] == {"amount": "5645.00", "currencyCode": "USD"}

    async def test_quote_refuses_what_a_product_does_not_allow(self, api: Api) -> None:
        cases = [
            (line("BASIC_EV", wildcards=1), ["input", "lines", "0", "wildcards"]),
            (line("BASIC_EV", years=3), ["input", "lines", "0", "validityYears"]),
            (line("BASIC_OV", quantity=0), ["input", "lines", "0", "quantity"]),
            (line("BASIC_OV", quantity=10_001), ["input", "lines", "0", "quantity"]),
            (line("BASIC_OV", fqdns=251), ["input", "lines", "0", "fqdns"]),
            (line("NOPE"), ["input", "lines", "0", "productCode"]),
        ]
        for bad, field in cases:
            result = (await api(QUOTE, {"input": {"lines": [line(), bad]}}))["data"]["voucherQuote"]
            field[2] = "1"
            assert [(e["code"], e["field"]) for e in result["errors"]] == [("INVALID", field)], bad
            assert result["total"] is None
        too_many = (await api(QUOTE, {"input": {"lines": [line()] * 21}}))["data"]["voucherQuote"]
        assert too_many["errors"][0]["field"] == ["input", "lines"]


class TestPlaceOrder:
    async def test_by_balance_commits_debit_order_and_vouchers(self, api: Api) -> None:
        p = await partner(api, balance="1000.00")
        result = await order(
            api,
            p["token"],
            line("BASIC_OV", 2),
            customerName="Jürgen Größe",
            notes="INV-7",
            paymentMethod="ACCOUNT_BALANCE",
        )
        assert result["errors"] == []
        placed = result["order"]
        assert placed["total"]["amount"] == "350.00"
        assert placed["paymentMethod"] == "ACCOUNT_BALANCE"
        assert re.match(r"^VO-\d{6}-[0-9A-Z]{4}-[0-9A-Z]{4}$", placed["number"])
        assert await balance_of(p["account_id"]) == 65_000
        model = await VoucherOrder.get(number=placed["number"])
        assert await Voucher.filter(order_id=model.id).count() == 2
        purchase = await LedgerEntry.get(order_id=model.id)
        assert purchase.amount == -35_000
        assert purchase.balance_after == 65_000

    async def test_the_default_method_is_preselected(self, api: Api) -> None:
        p = await partner(api)
        no_token = await order(api, p["token"])  # the card is preselected: it needs a token
        assert [(e["code"], e["field"]) for e in no_token["errors"]] == [("INVALID", ["input", "cardToken"])]
        assert (await order(api, p["token"], cardToken="tok_visa"))["order"]["paymentMethod"] == "CREDIT_CARD"
        await api(
            "mutation { financeSettingsUpdate(input: {defaultPaymentMethod: ACCOUNT_BALANCE}) { errors { code } } }",
            token=p["token"],
        )
        assert (await order(api, p["token"]))["order"]["paymentMethod"] == "ACCOUNT_BALANCE"

    async def test_insufficient_funds_leaves_nothing(self, api: Api) -> None:
        p = await partner(api, balance="100.00")
        outbox_before = await request_outbox_rows()
        result = await order(api, p["token"], line("BASIC_OV", 1), paymentMethod="ACCOUNT_BALANCE")
        assert result["order"] is None
        assert result["errors"][0]["code"] == "INSUFFICIENT_FUNDS"
        assert await VoucherOrder.filter(account_id=p["account_id"]).count() == 0
        assert await Voucher.filter(account_id=p["account_id"]).count() == 0
        assert await balance_of(p["account_id"]) == 10_000
        assert await request_outbox_rows() == outbox_before

    async def test_by_card(self, api: Api) -> None:
        p = await partner(api, balance=None)
        paid = await order(api, p["token"], paymentMethod="CREDIT_CARD", cardToken="tok_mastercard")
        assert paid["errors"] == []
        assert paid["order"]["paymentMethod"] == "CREDIT_CARD"
        model = await VoucherOrder.get(number=paid["order"]["number"])
        assert (model.gateway_charge_reference or "").startswith("ch_sandbox_")
        declined = await order(api, p["token"], paymentMethod="CREDIT_CARD", cardToken="tok_chargeDeclined")
        assert declined["errors"][0]["code"] == "PAYMENT_DECLINED"
        assert await VoucherOrder.filter(account_id=p["account_id"]).count() == 1

    async def test_who_may_order(self, api: Api) -> None:
        not_partner = await tenant(api)
        assert (await order(api, not_partner["token"]))["errors"][0]["code"] == "NOT_A_PARTNER"
        p = await partner(api)
        assert (await order(api, await member(api, p["token"], "MEMBER")))["errors"][0]["code"] == "PERMISSION_DENIED"
        finance = await member(api, p["token"], "FINANCE")
        assert (await order(api, finance, paymentMethod="ACCOUNT_BALANCE"))["errors"] == []

    async def test_a_disabled_method_is_refused(self, api: Api) -> None:
        p = await partner(api)
        await api(
            "mutation { financeSettingsUpdate(input: {creditCardEnabled: false, defaultPaymentMethod: "
            "ACCOUNT_BALANCE}) { errors { code } } }",
            token=p["token"],
        )
        refused = await order(api, p["token"], paymentMethod="CREDIT_CARD", cardToken="tok_visa")
        assert [(e["code"], e["field"]) for e in refused["errors"]] == [
            ("PAYMENT_METHOD_DISABLED", ["input", "paymentMethod"])
        ]

    async def test_azure_key_vault_pays_by_balance_only(self, api: Api) -> None:
        p = await partner(api)
        created = await api(
            'mutation { apiKeyCreate(input: {name: "kv", channel: AZURE_KEY_VAULT}) { secret } }', token=p["token"]
        )
        key = created["data"]["apiKeyCreate"]["secret"]
        by_default = await order(api, key)  # the account's default is the card: the key still pays by balance
        assert by_default["errors"] == []
        assert by_default["order"]["paymentMethod"] == "ACCOUNT_BALANCE"
        card = await order(api, key, paymentMethod="CREDIT_CARD", cardToken="tok_visa")
        assert card["errors"][0]["code"] == "PAYMENT_METHOD_DISABLED"

    async def test_idempotency_replays_and_refuses_other_input(self, api: Api) -> None:
        p = await partner(api)
        first = await order(api, p["token"], paymentMethod="ACCOUNT_BALANCE", idempotencyKey="o-1")
        again = await order(api, p["token"], paymentMethod="ACCOUNT_BALANCE", idempotencyKey="o-1")
        assert first["order"]["number"] == again["order"]["number"]
        other = await order(api, p["token"], line(quantity=3), paymentMethod="ACCOUNT_BALANCE", idempotencyKey="o-1")
        assert other["errors"][0]["code"] == "IDEMPOTENCY_KEY_REUSED"
        assert await VoucherOrder.filter(account_id=p["account_id"]).count() == 1
        assert await LedgerEntry.filter(account_id=p["account_id"], kind="PURCHASE").count() == 1

    async def test_a_replay_is_answered_after_the_balance_is_spent(self, api: Api) -> None:
        p = await partner(api, balance="400.00")
        first = await order(api, p["token"], paymentMethod="ACCOUNT_BALANCE", idempotencyKey="o-2")
        assert first["errors"] == []
        # 50.00 left: a new order of 350.00 is refused, its replay is not
        again = await order(api, p["token"], paymentMethod="ACCOUNT_BALANCE", idempotencyKey="o-2")
        assert again["errors"] == []
        assert again["order"]["number"] == first["order"]["number"]
        other = await order(api, p["token"], paymentMethod="ACCOUNT_BALANCE", idempotencyKey="o-3")
        assert other["errors"][0]["code"] == "INSUFFICIENT_FUNDS"
        assert await LedgerEntry.filter(account_id=p["account_id"], kind="PURCHASE").count() == 1

    async def test_customer_name_and_notes_are_checked_at_the_boundary(self, api: Api) -> None:  # G05
        p = await partner(api)
        too_long = "At most {} characters."
        control = "Control and bidirectional formatting characters are not allowed."
        cases = [
            ({"customerName": "x" * 10_000}, "customerName", too_long.format(CUSTOMER_NAME_MAX)),
            ({"notes": "n" * 1_000_000}, "notes", too_long.format(NOTES_MAX)),
            ({"customerName": "nul\x00byte"}, "customerName", control),
            ({"customerName": "bidi\u202egnirts"}, "customerName", control),
            ({"notes": "line\u2066isolate"}, "notes", control),
        ]
        for extra, field, message in cases:
            result = await order(api, p["token"], paymentMethod="ACCOUNT_BALANCE", **extra)
            # the field's limit is in the message: the client can tell the user what fits
            assert [(e["code"], e["field"], e["message"]) for e in result["errors"]] == [
                ("INVALID", ["input", field], message)
            ]
        assert await VoucherOrder.filter(account_id=p["account_id"]).count() == 0
        ok = await order(api, p["token"], paymentMethod="ACCOUNT_BALANCE", notes="INV-1\nsecond line\tok")
        assert ok["order"]["notes"] == "INV-1\nsecond line\tok"

    async def test_a_price_change_never_alters_a_placed_order(self, api: Api) -> None:
        from services.catalogue import update_product

        p = await partner(api)
        placed = (await order(api, p["token"], paymentMethod="ACCOUNT_BALANCE"))["order"]
        await update_product(code="BASIC_OV", price_base_per_year=99_900)
        try:
            read = (await api(ORDER, {"id": placed["id"]}, token=p["token"]))["data"]["node"]
            assert read["total"]["amount"] == "350.00"
            assert read["lines"][0]["unitPrice"]["amount"] == "175.00"
        finally:
            await update_product(code="BASIC_OV", price_base_per_year=17_500)


class TestReadingOrders:
    async def test_an_order_with_masked_vouchers_counts_and_history(self, api: Api) -> None:
        p = await partner(api)
        placed = (await order(api, p["token"], line("BASIC_OV", 5), paymentMethod="ACCOUNT_BALANCE"))["order"]
        read = (await api(ORDER, {"id": placed["id"]}, token=p["token"]))["data"]["node"]
        assert read["statusCounts"] == {"validUnused": 5, "validUsed": 0, "expired": 0, "cancelled": 0, "total": 5}
        vouchers = read["vouchers"]
        assert vouchers["totalCount"] == 5
        assert vouchers["pageInfo"]["hasNextPage"] is True
        assert all(MASKED.match(e["node"]["code"]) for e in vouchers["edges"])
        # the worker's PDF_READY may already be in: the request's own events are these
        events = [e["node"] for e in read["history"]["edges"] if e["node"]["kind"] != "PDF_READY"]
        assert [e["kind"] for e in events] == ["PAID", "PLACED"]
        assert events[0]["actor"] == p["email"]
        assert read["cancellable"] is True
        assert read["cancelBlockers"] == []

    async def test_a_voucher_past_its_expiry_reads_expired_without_any_job(self, api: Api) -> None:
        p = await partner(api)
        placed = (await order(api, p["token"], line("BASIC_OV", 2), paymentMethod="ACCOUNT_BALANCE"))["order"]
        with shifted(timedelta(days=366)):  # a year on: sign in again, the first session has lapsed
            token = await sign_in(api, p["email"])
            read = (await api(ORDER, {"id": placed["id"]}, token=token))["data"]["node"]
        assert read["statusCounts"]["expired"] == 2
        assert read["statusCounts"]["validUnused"] == 0
        assert {e["node"]["status"] for e in read["vouchers"]["edges"]} == {"EXPIRED"}
        assert {b["code"] for b in read["cancelBlockers"]} == {"CANCEL_WINDOW_CLOSED", "ORDER_HAS_EXPIRED_VOUCHERS"}

    async def test_list_newest_first_filtered_and_stable_while_orders_arrive(self, api: Api) -> None:
        p = await partner(api)
        numbers = []
        for name in ("Alpha AG", "Beta SA", "Gamma Ltd"):
            numbers.append(
                (await order(api, p["token"], paymentMethod="ACCOUNT_BALANCE", customerName=name))["order"]["number"]
            )
        query = """query L($after: String, $filter: VoucherOrderFilter) {
          voucherOrders(first: 2, after: $after, filter: $filter) {
          totalCount pageInfo { hasNextPage endCursor } edges { node { number customerName } } } }"""
        page1 = (await api(query, token=p["token"]))["data"]["voucherOrders"]
        assert [e["node"]["number"] for e in page1["edges"]] == numbers[:0:-1]
        await order(api, p["token"], paymentMethod="ACCOUNT_BALANCE", customerName="Delta GmbH")  # arrives meanwhile
        page2 = (await api(query, {"after": page1["pageInfo"]["endCursor"]}, token=p["token"]))["data"]["voucherOrders"]
        assert [e["node"]["number"] for e in page2["edges"]] == [numbers[0]]
        assert page2["pageInfo"]["hasNextPage"] is False
        beta = (await api(query, {"filter": {"customerName": "bEtA"}}, token=p["token"]))["data"]["voucherOrders"]
        assert [e["node"]["customerName"] for e in beta["edges"]] == ["Beta SA"]
        future = await api(query, {"filter": {"createdAfter": "2099-01-01T00:00:00Z"}}, token=p["token"])
        assert future["data"]["voucherOrders"]["totalCount"] == 0

    async def test_another_tenants_orders_and_vouchers_read_as_missing(self, api: Api) -> None:
        a, b = await partner(api), await partner(api)
        placed = (await order(api, a["token"], paymentMethod="ACCOUNT_BALANCE"))["order"]
        read = (await api(ORDER, {"id": placed["id"]}, token=a["token"]))["data"]["node"]
        voucher_id = read["vouchers"]["edges"][0]["node"]["id"]
        for node_id in (placed["id"], voucher_id):
            assert (await api(ORDER, {"id": node_id}, token=b["token"]))["data"]["node"] is None
        listed = (await api("{ voucherOrders { totalCount } }", token=b["token"]))["data"]["voucherOrders"]
        assert listed["totalCount"] == 0
        revealed = (await api(REVEAL, {"input": {"orderId": placed["id"]}}, token=b["token"]))["data"]
        missing = (await api(REVEAL, {"input": {"orderId": "Vm91Y2hlck9yZGVyOjk5OTk5OTk5"}}, token=b["token"]))["data"]
        assert revealed == missing
        assert revealed["voucherCodesReveal"]["errors"][0]["code"] == "NOT_FOUND"


class TestReveal:
    async def test_admin_and_finance_see_full_codes_and_it_is_recorded(self, api: Api) -> None:
        p = await partner(api)
        placed = (await order(api, p["token"], line("BASIC_OV", 3), paymentMethod="ACCOUNT_BALANCE"))["order"]
        finance = await member(api, p["token"], "FINANCE")
        revealed = (await api(REVEAL, {"input": {"orderId": placed["id"]}}, token=finance))["data"][
            "voucherCodesReveal"
        ]
        codes = [c["code"] for c in revealed["codes"]]
        assert len(set(codes)) == 3
        assert all(re.match(r"^VS(-[0-9A-HJKMNP-TV-Z]{5}){4}$", c) for c in codes)
        for item in revealed["codes"]:
            assert item["voucher"]["code"].endswith(item["code"][-5:])
        history = (await api(ORDER, {"id": placed["id"]}, token=p["token"]))["data"]["node"]["history"]["edges"]
        # by kind, not position: the worker's PDF_READY may land after the reveal
        assert [e["node"]["details"] for e in history if e["node"]["kind"] == "CODES_REVEALED"] == [{"count": 3}]

    async def test_members_cannot_reveal(self, api: Api) -> None:
        p = await partner(api)
        placed = (await order(api, p["token"], paymentMethod="ACCOUNT_BALANCE"))["order"]
        token = await member(api, p["token"], "MEMBER")
        result = (await api(REVEAL, {"input": {"orderId": placed["id"]}}, token=token))["data"]["voucherCodesReveal"]
        assert result["codes"] is None
        assert result["errors"][0]["code"] == "PERMISSION_DENIED"
        url = await api(f'{{ node(id: "{placed["id"]}") {{ ... on VoucherOrder {{ csvUrl }} }} }}', token=token)
        assert url["data"]["node"]["csvUrl"] is None


class TestLimits:
    async def test_page_sizes_are_capped(self, api: Api) -> None:  # G02
        p = await partner(api)
        result = await api(
            "{ voucherOrders(first: 1000) { edges { node { vouchers(first: 1000) { totalCount } } } } }",
            token=p["token"],
        )
        assert result["data"] is None
        assert "Page size" in result["errors"][0]["message"]
        nested = await api(
            "{ voucherOrders(first: 10) { edges { node { vouchers(first: 1000) { totalCount } } } } }", token=p["token"]
        )
        assert nested["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
        assert ORDER_CREATE  # the document constant is shared with other tests


@pytest.mark.postgres
class TestConcurrentOrders:
    async def test_ten_twins_with_one_key_place_one_order(self, api: Api) -> None:
        p = await partner(api, balance="1000.00")
        clients = [api.client() for _ in range(10)]
        variables = {"input": {"lines": [line()], "paymentMethod": "ACCOUNT_BALANCE", "idempotencyKey": "twin"}}
        results = await asyncio.gather(*(c(ORDER_CREATE, variables, token=p["token"]) for c in clients))
        payloads = [r["data"]["voucherOrderCreate"] for r in results]
        numbers = {r["order"]["number"] for r in payloads if r["order"]}
        assert len(numbers) == 1
        assert all(r["order"] or r["errors"][0]["code"] == "IDEMPOTENCY_KEY_IN_PROGRESS" for r in payloads)
        assert await VoucherOrder.filter(account_id=p["account_id"]).count() == 1
        assert await balance_of(p["account_id"]) == 100_000 - 35_000
