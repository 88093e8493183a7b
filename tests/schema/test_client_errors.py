"""E02, E04: a client's mistake is a client error, the whole class of it, through HTTP.

Variables missing, mistyped or out of range; global ids malformed or out of range
wherever an id is accepted; money as a number (every string input over its limit:
test_string_limits.py).
None of them is an INTERNAL_SERVER_ERROR, and none is logged as unexpected.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from services import staff
from tests.support.api import Api
from tests.support.client_errors import no_unexpected_errors, post
from tests.support.factories import DEPOSIT, PASSWORD, partner, sign_in, tenant, unique_email

__all__ = ["no_unexpected_errors"]  # the autouse fixture, for this module's tests


def global_id(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# Every way a global id can be wrong; each must read as a missing object.
BAD_IDS = {
    "2^63": global_id(f"VoucherOrder:{2**63}"),
    "2^64": global_id(f"VoucherOrder:{2**64}"),
    "5000 digits": global_id("VoucherOrder:" + "9" * 5_000),
    "bad base64": "!!not*base64",
    "no colon": global_id("VoucherOrder"),
    "unknown type": global_id("NoSuchType:1"),
    "wrong type": global_id("ApiKey:1"),
    "zero": global_id("VoucherOrder:0"),
    "negative": global_id("VoucherOrder:-1"),
    "unicode digits": global_id("VoucherOrder:١٢٣"),
}


class TestVariables:
    QUERY = """query Orders($first: Int, $filter: VoucherOrderFilter) {
  voucherOrders(first: $first, filter: $filter) { totalCount } }"""
    NEEDS_ID = "query Node($id: ID!) { node(id: $id) { id } }"

    @pytest.mark.parametrize(
        ("variables", "names"),
        [
            ({"first": 2**31}, ["$first", "32-bit"]),
            ({"first": "ten"}, ["$first", "Int cannot represent"]),
            ({"first": 1.5}, ["$first", "Int cannot represent"]),
            ({"filter": {"status": "GONE"}}, ["$filter", "GONE", "VoucherOrderStatus"]),
            ({"filter": {"nope": 1}}, ["$filter", "nope"]),
            ({"filter": "ACTIVE"}, ["$filter", "VoucherOrderFilter"]),
        ],
    )
    async def test_a_mistyped_or_out_of_range_variable_is_named_with_its_problem(
        self, api: Api, variables: dict[str, Any], names: list[str]
    ) -> None:
        admin = await tenant(api)
        status, body = await post(api, {"query": self.QUERY, "variables": variables}, admin["token"])
        assert status == 400, body
        [error] = body["errors"]
        assert all(name in error["message"] for name in names), error

    async def test_a_missing_variable_is_named(self, api: Api) -> None:
        status, body = await post(api, {"query": self.NEEDS_ID, "variables": {}})
        assert status == 400
        assert "$id" in body["errors"][0]["message"]
        assert "ID!" in body["errors"][0]["message"]

    async def test_with_application_json_it_is_200_with_the_same_error(self, api: Api) -> None:
        result = await api(self.NEEDS_ID, {"id": None})
        assert result["data"] is None
        assert "$id" in result["errors"][0]["message"]


class TestGlobalIds:
    @pytest.mark.parametrize("bad", BAD_IDS.values(), ids=BAD_IDS.keys())
    async def test_node_and_nodes_read_a_bad_id_as_missing(self, api: Api, bad: str) -> None:
        admin = await tenant(api)
        query = "query N($id: ID!, $ids: [ID!]!) { node(id: $id) { id } nodes(ids: $ids) { id } }"
        real = (await api("{ viewer { account { id } } }", token=admin["token"]))["data"]["viewer"]["account"]["id"]
        status, body = await post(api, {"query": query, "variables": {"id": bad, "ids": [bad, real]}}, admin["token"])
        assert (status, body) == (200, {"data": {"node": None, "nodes": [None, {"id": real}]}})

    async def test_a_bad_id_written_in_the_document_reads_as_missing(self, api: Api) -> None:
        status, body = await post(api, {"query": '{ node(id: "!!!") { id } }'})
        assert (status, body) == (200, {"data": {"node": None}})

    async def test_every_input_id_reads_a_bad_id_as_not_found(self, api: Api) -> None:
        # given: a partner (for the tenant's mutations) and a staff user (for the staff ones)
        seller = await partner(api)
        staff_email = unique_email("staff")
        await staff.create_staff(email=staff_email, password=PASSWORD)
        staff_token = await sign_in(api, staff_email)
        mutations = {
            "voucherOrderCancel": ("VoucherOrderCancelInput", "orderId", seller["token"]),
            "voucherCodesReveal": ("VoucherCodesRevealInput", "orderId", seller["token"]),
            "voucherOrderPdfRender": ("VoucherOrderPdfRenderInput", "orderId", seller["token"]),
            "apiKeyRevoke": ("ApiKeyRevokeInput", "id", seller["token"]),
            "certificateRequestCancel": ("CertificateRequestCancelInput", "id", seller["token"]),
            "certificateRevoke": ("CertificateRevokeInput", "id", seller["token"]),
            "certificateRequestIssue": ("CertificateRequestCancelInput", "id", staff_token),
            "partnerEnable": ("PartnerEnableInput", "accountId", staff_token),
            "balanceAdjust": ("BalanceAdjustInput", "accountId", staff_token),
            "jobRetry": ("JobRetryInput", "id", staff_token),
        }
        extra = {"balanceAdjust": {"amount": "1.00", "memo": "test"}}
        for name, (input_type, field, token) in mutations.items():
            document = f"mutation M($input: {input_type}!) {{ {name}(input: $input) {{ errors {{ code field }} }} }}"
            for label, bad in BAD_IDS.items():
                bad_value = "9" * 5_000 if name == "jobRetry" and label == "5000 digits" else bad
                variables = {"input": {field: bad_value, **extra.get(name, {})}}
                status, body = await post(api, {"query": document, "variables": variables}, token)
                assert status == 200, (name, label, body)
                assert body["data"][name]["errors"][0]["code"] == "NOT_FOUND", (name, label, body)


DEPOSIT_LITERAL = (
    'mutation { fundsDeposit(input: {amount: %s, cardToken: "tok_visa"}) { ledgerEntry { id } errors { code } } }'
)


class TestMoneyIsAString:
    @pytest.mark.parametrize("literal", ["500", "1e3", "12.5", "-1"])
    async def test_a_number_literal_is_refused_and_moves_nothing(self, api: Api, literal: str) -> None:
        admin = await tenant(api)
        status, body = await post(api, {"query": DEPOSIT_LITERAL % literal}, admin["token"])
        assert status == 400, body
        assert "Decimal" in body["errors"][0]["message"]
        assert "string" in body["errors"][0]["message"]
        assert await self.balance(api, admin["token"]) == "0.00"

    @pytest.mark.parametrize("number", [500, 1e3, 12.5, True])
    async def test_a_json_number_in_the_variables_is_refused_and_moves_nothing(
        self, api: Api, number: float | bool
    ) -> None:
        admin = await tenant(api)
        variables = {"input": {"amount": number, "cardToken": "tok_visa"}}
        status, body = await post(api, {"query": DEPOSIT, "variables": variables}, admin["token"])
        assert status == 400, body
        message = body["errors"][0]["message"]
        for word in ("$input", "amount", "string"):
            assert word in message, message
        assert await self.balance(api, admin["token"]) == "0.00"

    async def test_the_same_amount_as_a_string_is_deposited(self, api: Api) -> None:
        admin = await tenant(api)
        status, body = await post(api, {"query": DEPOSIT_LITERAL % '"500"'}, admin["token"])
        assert status == 200, body
        assert body["data"]["fundsDeposit"]["errors"] == [], body
        assert await self.balance(api, admin["token"]) == "500.00"

    async def balance(self, api: Api, token: str) -> str:
        result = await api("{ viewer { account { balance { amount } } } }", token=token)
        return str(result["data"]["viewer"]["account"]["balance"]["amount"])
