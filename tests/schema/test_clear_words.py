"""Production hides the schema's names; errors say what happened and what to do, through HTTP."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.accounts import SIGN_IN_PER_EMAIL
from settings import Settings
from tests.support.api import Api, loopback_client
from tests.support.factories import PASSWORD, SIGN_IN, SIGN_OUT, SIGN_UP, line, partner, sign_in, tenant, unique_email

# Each misspelling graphql-core would answer with "Did you mean ...?".
MISSPELLINGS = {
    "field": ("{ viewr { user { id } } }", None),
    "argument": ("{ voucherOrders(frist: 1) { totalCount } }", None),
    "enum value": ("{ voucherOrders(filter: {status: ACTIVEE}) { totalCount } }", None),
    "type": ("query Q($f: VoucherOrderFiltr) { voucherOrders(filter: $f) { totalCount } }", None),
    "input field": ("{ voucherOrders(filter: {statuss: ACTIVE}) { totalCount } }", None),
    "enum value in variables": (
        "query Q($f: VoucherOrderFilter) { voucherOrders(filter: $f) { totalCount } }",
        {"f": {"status": "ACTIVEE"}},
    ),
    "input field in variables": (
        "query Q($f: VoucherOrderFilter) { voucherOrders(filter: $f) { totalCount } }",
        {"f": {"statuss": "ACTIVE"}},
    ),
}


@pytest.fixture
async def production_api(production_settings: Settings) -> AsyncIterator[Api]:
    from server import create_app

    app = create_app(production_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=loopback_client())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield Api(http)


async def error_messages(api: Api, query: str, variables: dict[str, Any] | None) -> list[str]:
    admin = await tenant(api)
    result = await api(query, variables, token=admin["token"])
    return [error["message"] for error in result["errors"]]


class TestSuggestions:
    @pytest.mark.parametrize(("query", "variables"), MISSPELLINGS.values(), ids=MISSPELLINGS.keys())
    async def test_production_suggests_no_name(
        self, production_api: Api, query: str, variables: dict[str, Any] | None
    ) -> None:
        messages = await error_messages(production_api, query, variables)
        assert messages
        assert not any("Did you mean" in m for m in messages), messages

    @pytest.mark.parametrize(("query", "variables"), MISSPELLINGS.values(), ids=MISSPELLINGS.keys())
    async def test_development_suggests_the_name(self, api: Api, query: str, variables: dict[str, Any] | None) -> None:
        # The same requests do get suggestions in development: the production test can fail.
        messages = await error_messages(api, query, variables)
        assert any("Did you mean" in m for m in messages), messages

    async def test_production_still_refuses_introspection(self, production_api: Api) -> None:
        result = await production_api("{ __schema { types { name } } }")
        assert result["data"] is None
        assert "introspection" in result["errors"][0]["message"].lower()


class TestTokens:
    async def test_an_unknown_token_says_so(self, api: Api) -> None:
        result = await api("{ viewer { account { id } } }", token="vss_unknown")
        [error] = result["errors"]
        assert error["extensions"]["code"] == "UNAUTHENTICATED"
        assert "unknown, expired or revoked" in error["message"], error

    async def test_a_revoked_token_says_so(self, api: Api) -> None:
        admin = await tenant(api)
        await api(SIGN_OUT, token=admin["token"])
        result = await api("{ viewer { account { id } } }", token=admin["token"])
        assert "unknown, expired or revoked" in result["errors"][0]["message"]

    async def test_a_revoked_token_reading_a_node_says_so_rather_than_null(self, api: Api) -> None:
        admin = await tenant(api)
        account = (await api("{ viewer { account { id } } }", token=admin["token"]))["data"]["viewer"]["account"]
        read = "query N($id: ID!) { node(id: $id) { id } nodes(ids: [$id]) { id } }"
        assert (await api(read, {"id": account["id"]}, token=admin["token"]))["data"]["node"] == account
        await api(SIGN_OUT, token=admin["token"])
        result = await api(read, {"id": account["id"]}, token=admin["token"])
        assert result["data"] is None
        assert {e["extensions"]["code"] for e in result["errors"]} == {"UNAUTHENTICATED"}
        assert "unknown, expired or revoked" in result["errors"][0]["message"]
        # with no token at all, an id still reads as null: nothing says whether it exists
        anonymous = await api(read, {"id": account["id"]})
        assert anonymous == {"data": {"node": None, "nodes": [None]}}

    async def test_no_token_asks_to_sign_in(self, api: Api) -> None:
        result = await api("{ viewer { account { id } } }")
        assert result["errors"][0]["message"].startswith("Sign in first")


class TestRateLimited:
    async def test_the_user_error_carries_the_seconds_as_a_number(self, api: Api) -> None:
        signed_up = await tenant(api)
        wrong = {"input": {"email": signed_up["email"], "password": "wrong password!"}}
        document = SIGN_IN.replace("errors { code field message }", "errors { code message retryAfterSeconds }")
        for _ in range(SIGN_IN_PER_EMAIL.max_hits):
            await api.client()(document, wrong)
        [error] = (await api.client()(document, wrong))["data"]["signIn"]["errors"]
        assert error["code"] == "RATE_LIMITED"
        assert 0 < error["retryAfterSeconds"] <= SIGN_IN_PER_EMAIL.window_seconds
        assert f"Try again in {error['retryAfterSeconds']} seconds" in error["message"]

    async def test_a_graphql_level_rate_limit_has_retry_after_seconds_in_extensions(self, api: Api) -> None:
        query = "query V($code: String!) { voucherByCode(code: $code) { status } }"
        unknown = {"code": "VS-AAAAA-AAAAA-AAAAA-AAAAA"}
        result: dict[str, Any] = {}
        for _ in range(11):
            result = await api(query, unknown)
        [error] = result["errors"]
        assert error["extensions"]["code"] == "RATE_LIMITED"
        seconds = error["extensions"]["retryAfterSeconds"]
        assert isinstance(seconds, int)
        assert seconds > 0
        assert f"Try again in {seconds} seconds" in error["message"]


class TestInsufficientFunds:
    async def test_says_the_amount_needed_and_the_balance(self, api: Api) -> None:
        seller = await partner(api, balance="10.00")
        result = await api(
            "mutation M($input: VoucherOrderCreateInput!) {"
            " voucherOrderCreate(input: $input) { errors { code message } } }",
            {"input": {"lines": [line(quantity=1)], "paymentMethod": "ACCOUNT_BALANCE"}},
            token=seller["token"],
        )
        [error] = result["data"]["voucherOrderCreate"]["errors"]
        assert error["code"] == "INSUFFICIENT_FUNDS"
        assert re.search(r"needs \d+\.\d\d USD, the balance is 10\.00 USD", error["message"]), error


class TestSignUp:
    async def test_every_invalid_field_is_reported_at_once(self, api: Api) -> None:
        variables = {"input": {"email": "not-an-email", "password": "short", "accountName": " ", "locale": "xx"}}
        result = await api(SIGN_UP, variables)
        errors = result["data"]["signUp"]["errors"]
        assert [e["field"] for e in errors] == [
            ["input", "email"],
            ["input", "password"],
            ["input", "accountName"],
            ["input", "locale"],
        ], errors
        assert all(e["code"] == "INVALID" for e in errors)

    async def test_one_invalid_field_is_one_error(self, api: Api) -> None:
        variables = {"input": {"email": unique_email(), "password": "short", "accountName": "Acme", "locale": "en"}}
        errors = (await api(SIGN_UP, variables))["data"]["signUp"]["errors"]
        assert [e["field"] for e in errors] == [["input", "password"]]
        assert await sign_in_fails(api, variables["input"]["email"])


async def sign_in_fails(api: Api, email: str) -> bool:
    try:
        await sign_in(api, email, PASSWORD)
    except AssertionError:
        return True
    return False
