"""E02, E04: every string input of the schema one character over its limit, through HTTP.

A field error naming the limit, nothing stored; none is an INTERNAL_SERVER_ERROR, and none
is logged as unexpected. A new string input without a limit tested here fails the first test.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from graphql import GraphQLInputObjectType, GraphQLList, GraphQLNonNull, GraphQLObjectType, GraphQLScalarType

import models
import schema
from services import staff
from tests.support.api import Api
from tests.support.client_errors import no_unexpected_errors, post
from tests.support.factories import DEPOSIT, PASSWORD, line, partner, sign_in, tenant, unique_email

__all__ = ["no_unexpected_errors"]  # the autouse fixture, for this module's tests


def string_inputs() -> set[str]:
    """Every String (or [String]) input field and argument of the schema, as Type.field(.argument)."""
    graphql_schema = schema.schema._schema  # noqa: SLF001  # the graphql-core schema Strawberry built

    def is_string(kind: Any) -> bool:
        while isinstance(kind, GraphQLNonNull | GraphQLList):
            kind = kind.of_type
        return isinstance(kind, GraphQLScalarType) and kind.name == "String"

    found = set()
    for name, kind in graphql_schema.type_map.items():
        if name.startswith("__"):
            continue
        if isinstance(kind, GraphQLInputObjectType):
            found |= {f"{name}.{field}" for field, value in kind.fields.items() if is_string(value.type)}
        if isinstance(kind, GraphQLObjectType):
            for field_name, field in kind.fields.items():
                found |= {f"{name}.{field_name}({arg})" for arg, value in field.args.items() if is_string(value.type)}
    return found


def mutation(name: str, input_type: str) -> str:
    return f"mutation M($input: {input_type}!) {{ {name}(input: $input) {{ errors {{ code field message }} }} }}"


SIGN_UP = mutation("signUp", "SignUpInput")
SIGN_IN = mutation("signIn", "SignInInput")
USER_CREATE = mutation("userCreate", "UserCreateInput")
KEY_CREATE = mutation("apiKeyCreate", "ApiKeyCreateInput")
ADJUST = mutation("balanceAdjust", "BalanceAdjustInput")
ORDER = mutation("voucherOrderCreate", "VoucherOrderCreateInput")
CANCEL = mutation("voucherOrderCancel", "VoucherOrderCancelInput")
ACCOUNT_UPDATE = mutation("accountUpdate", "AccountUpdateInput")
STAFF_ACCOUNTS = """query Q($a: String, $s: String) { accounts(after: $a, search: $s) { totalCount } }"""
REDEEM = mutation("voucherRedeem", "VoucherRedeemInput")
QUOTE = "query Q($input: VoucherQuoteInput!) { voucherQuote(input: $input) { errors { code field message } } }"
BY_CODE = "query Q($code: String!) { voucherByCode(code: $code) { status } }"
ORDERS = """query Q($f: VoucherOrderFilter, $a: String, $b: String) {
  voucherOrders(filter: $f, after: $a, before: $b) { totalCount } }"""
ACCOUNT_PAGES = """query Q($a: String, $b: String) { viewer { account {
  users(after: $a, before: $b) { totalCount } apiKeys(after: $a, before: $b) { totalCount }
  ledger(after: $a, before: $b) { totalCount } } } }"""
ORDER_PAGES = """query Q($id: ID!, $a: String) { node(id: $id) { ... on VoucherOrder {
  vouchers(after: $a) { totalCount } history(after: $a) { totalCount } } } }"""
REQUESTS = "query Q($a: String) { certificateRequests(after: $a) { totalCount } }"
HOOK_CREATE = mutation("webhookEndpointCreate", "WebhookEndpointCreateInput")
HOOK_UPDATE = mutation("webhookEndpointUpdate", "WebhookEndpointUpdateInput")
HOOK_PAGES = """query Q($id: ID!, $a: String, $b: String) { viewer { account { webhookEndpoints(after: $a, before: $b) {
  totalCount } } } node(id: $id) { ... on WebhookEndpoint { deliveries(after: $a, before: $b) { totalCount } } } }"""
# A public address written as an IP: an endpoint can be made without a DNS lookup or plain-http permission.
HOOK_URL = "https://8.8.8.8/hooks"

REDEEM_INPUT = {"code": "VS-AAAAA-AAAAA-AAAAA-AAAAA", "commonName": "example.com"}
CURSOR = 100
LIMITS = {
    "SignUpInput.email": 254,
    "SignUpInput.password": 200,
    "SignUpInput.accountName": 200,
    "SignUpInput.locale": 10,
    "SignInInput.email": 254,
    "SignInInput.password": 200,
    "UserCreateInput.email": 254,
    "UserCreateInput.password": 200,
    "ApiKeyCreateInput.name": 100,
    "BalanceAdjustInput.memo": 500,
    "BalanceAdjustInput.idempotencyKey": 255,
    "FundsDepositInput.cardToken": 255,
    "FundsDepositInput.idempotencyKey": 255,
    "VoucherLineInput.productCode": 40,
    "VoucherOrderCreateInput.customerName": 200,
    "VoucherOrderCreateInput.notes": 2_000,
    "VoucherOrderCreateInput.cardToken": 255,
    "VoucherOrderCreateInput.idempotencyKey": 255,
    "VoucherOrderCancelInput.idempotencyKey": 255,
    "VoucherOrderFilter.customerName": 200,
    "VoucherRedeemInput.code": 100,
    "VoucherRedeemInput.commonName": 260,
    "VoucherRedeemInput.additionalFqdns": 260,
    "VoucherRedeemInput.wildcards": 260,
    "VoucherRedeemInput.csr": 20_000,
    "Query.voucherByCode(code)": 100,
    "Query.voucherOrders(after)": CURSOR,
    "Query.voucherOrders(before)": CURSOR,
    "Query.certificateRequests(after)": CURSOR,
    "Account.users(after)": CURSOR,
    "Account.users(before)": CURSOR,
    "Account.apiKeys(after)": CURSOR,
    "Account.apiKeys(before)": CURSOR,
    "Account.ledger(after)": CURSOR,
    "Account.ledger(before)": CURSOR,
    "VoucherOrder.vouchers(after)": CURSOR,
    "VoucherOrder.history(after)": CURSOR,
    "WebhookEndpointCreateInput.url": 2048,
    "WebhookEndpointCreateInput.description": 500,
    "WebhookEndpointUpdateInput.url": 2048,
    "WebhookEndpointUpdateInput.description": 500,
    "Account.webhookEndpoints(after)": CURSOR,
    "Account.webhookEndpoints(before)": CURSOR,
    "WebhookEndpoint.deliveries(after)": CURSOR,
    "WebhookEndpoint.deliveries(before)": CURSOR,
    "AccountUpdateInput.name": 200,
    "AccountUpdateInput.locale": 10,
    "VoucherOrderFilter.number": 32,
    "Query.accounts(search)": 200,
    "Query.accounts(after)": CURSOR,
}


def test_every_string_input_of_the_schema_has_a_limit_tested_here() -> None:
    assert string_inputs() == set(LIMITS)


class TestStringLimits:
    """Each string input one character over its limit: a field error naming the limit; nothing stored."""

    @pytest.fixture
    async def seller(self, api: Api) -> dict[str, Any]:
        seller = await partner(api)
        placed = await api(
            "mutation M($input: VoucherOrderCreateInput!) { voucherOrderCreate(input: $input) { order { id } } }",
            {"input": {"lines": [line(quantity=1)], "paymentMethod": "ACCOUNT_BALANCE"}},
            token=seller["token"],
        )
        seller["order_id"] = placed["data"]["voucherOrderCreate"]["order"]["id"]
        hook = await api(
            "mutation M($input: WebhookEndpointCreateInput!) { webhookEndpointCreate(input: $input) {"
            " endpoint { id } errors { code field message } } }",
            {"input": {"url": HOOK_URL, "events": ["VOUCHER_REDEEMED"]}},
            token=seller["token"],
        )
        seller["endpoint_id"] = hook["data"]["webhookEndpointCreate"]["endpoint"]["id"]
        staff_email = unique_email("staff")
        await staff.create_staff(email=staff_email, password=PASSWORD)
        seller["staff_token"] = await sign_in(api, staff_email)
        return seller

    def request(self, coordinate: str, value: str, seller: dict[str, Any]) -> tuple[str, dict[str, Any], str | None]:
        """The document, variables and token that put `value` into the input at `coordinate`."""
        kind, _, field = coordinate.partition(".")
        token = seller["token"]
        if kind in ("SignUpInput", "SignInInput", "UserCreateInput"):
            fields: dict[str, Any] = {"email": unique_email("long"), "password": PASSWORD}
            if kind == "SignUpInput":
                fields |= {"accountName": "Acme", "locale": "en"}
            document = {"SignUpInput": SIGN_UP, "SignInInput": SIGN_IN, "UserCreateInput": USER_CREATE}[kind]
            if kind == "UserCreateInput":
                fields["role"] = "MEMBER"
            return document, {"input": {**fields, field: value}}, token if kind == "UserCreateInput" else None
        if kind == "ApiKeyCreateInput":
            return KEY_CREATE, {"input": {"name": value}}, token
        if kind == "BalanceAdjustInput":
            account_id = base64.b64encode(f"Account:{seller['account_id']}".encode()).decode()
            fields = {"accountId": account_id, "amount": "1.00", "memo": "memo"}
            return ADJUST, {"input": {**fields, field: value}}, seller["staff_token"]
        if kind == "FundsDepositInput":
            return DEPOSIT, {"input": {"amount": "10.00", "cardToken": "tok_visa", field: value}}, token
        if kind == "VoucherLineInput":
            return QUOTE, {"input": {"lines": [line(product=value)]}}, None
        if kind == "VoucherOrderCreateInput":
            fields = {"lines": [line(quantity=1)], "paymentMethod": "CREDIT_CARD", "cardToken": "tok_visa"}
            return ORDER, {"input": {**fields, field: value}}, token
        if kind == "VoucherOrderCancelInput":
            return CANCEL, {"input": {"orderId": seller["order_id"], field: value}}, token
        if kind == "VoucherOrderFilter":
            return ORDERS, {"f": {field: value}}, token
        if kind == "VoucherRedeemInput":
            named = [value] if field in ("additionalFqdns", "wildcards") else value
            return REDEEM, {"input": {**REDEEM_INPUT, field: named}}, token
        if kind == "AccountUpdateInput":
            return ACCOUNT_UPDATE, {"input": {field: value}}, token
        if coordinate.startswith("Query.accounts("):
            return STAFF_ACCOUNTS, {"s" if "search" in coordinate else "a": value}, seller["staff_token"]
        if kind == "WebhookEndpointCreateInput":
            return HOOK_CREATE, {"input": {"url": HOOK_URL, "events": ["VOUCHER_REDEEMED"], field: value}}, token
        if kind == "WebhookEndpointUpdateInput":
            return HOOK_UPDATE, {"input": {"id": seller["endpoint_id"], field: value}}, token
        if coordinate == "Query.voucherByCode(code)":
            return BY_CODE, {"code": value}, None
        argument = "a" if coordinate.endswith("(after)") else "b"
        if kind == "Query":
            return (ORDERS if "voucherOrders" in coordinate else REQUESTS), {argument: value}, token
        if kind == "WebhookEndpoint" or "webhookEndpoints" in coordinate:
            return HOOK_PAGES, {"id": seller["endpoint_id"], argument: value}, token
        if kind == "Account":
            return ACCOUNT_PAGES, {argument: value}, token
        return ORDER_PAGES, {"id": seller["order_id"], "a": value}, token

    @pytest.mark.parametrize("coordinate", sorted(LIMITS))
    async def test_one_character_over_the_limit_is_a_field_error_naming_it(
        self, api: Api, seller: dict[str, Any], coordinate: str
    ) -> None:
        limit = LIMITS[coordinate]
        value = "a" * (limit + 1)
        if coordinate.startswith("VoucherRedeemInput.wildcards"):
            value = "*." + "a" * (limit - 1)
        users, orders, entries = await models.User.all().count(), await models.VoucherOrder.all().count(), None
        entries = await models.LedgerEntry.all().count()
        document, variables, token = self.request(coordinate, value, seller)
        status, body = await post(api, {"query": document, "variables": variables}, token)
        assert status == 200, body
        messages = [e["message"] for e in body.get("errors") or []]
        payload_errors = [
            e
            for payload in (body.get("data") or {}).values()
            if isinstance(payload, dict)
            for e in payload.get("errors") or []
        ]
        messages += [e["message"] for e in payload_errors]
        assert any(str(limit) in message for message in messages), body
        assert all(e["code"] in ("INVALID", "CSR_INVALID") for e in payload_errors), body
        # nothing was stored
        assert await models.User.all().count() == users
        assert await models.VoucherOrder.all().count() == orders
        assert await models.LedgerEntry.all().count() == entries

    async def test_a_41_character_product_code_never_reaches_the_database(self, api: Api) -> None:
        status, body = await post(api, {"query": QUOTE, "variables": {"input": {"lines": [line(product="A" * 41)]}}})
        assert status == 200
        [error] = body["data"]["voucherQuote"]["errors"]
        assert error == {
            "code": "INVALID",
            "field": ["input", "lines", "0", "productCode"],
            "message": "At most 40 characters.",
        }

    async def test_a_code_that_upper_casing_lengthens_is_a_field_error(self, api: Api) -> None:
        # Found by schemathesis: 40 characters with a "ß" become 41 once upper-cased ("SS").
        status, body = await post(api, {"query": QUOTE, "variables": {"input": {"lines": [line(product="ß" * 40)]}}})
        assert status == 200
        [error] = body["data"]["voucherQuote"]["errors"]
        assert error["code"] == "INVALID"
        assert error["field"] == ["input", "lines", "0", "productCode"]

    async def test_an_order_number_that_upper_casing_lengthens_is_a_client_error(self, api: Api) -> None:
        seller = await tenant(api)
        status, body = await post(api, {"query": ORDERS, "variables": {"f": {"number": "ß" * 32}}}, seller["token"])
        assert status == 200
        assert "32" in body["errors"][0]["message"]
        assert body["errors"][0]["extensions"]["code"] == "INVALID"
