"""The API the console needs beside the rest: staff's `accounts` search and `accountUpdate`."""

from __future__ import annotations

from services import staff
from tests.support.api import Api
from tests.support.factories import PASSWORD, member, order, partner, sign_in, tenant, unique_email
from tests.support.statements import statements_of

ACCOUNTS = """
query Accounts($first: Int, $after: String, $search: String) {
  accounts(first: $first, after: $after, search: $search) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { id name locale isPartner createdAt balance { amount currencyCode } } }
  }
}"""
ACCOUNT_UPDATE = """
mutation AccountUpdate($input: AccountUpdateInput!) {
  accountUpdate(input: $input) { account { name locale } errors { code field message } }
}"""


async def staff_token(api: Api) -> str:
    email = unique_email("staff")
    await staff.create_staff(email=email, password=PASSWORD)
    return await sign_in(api, email)


class TestStaffAccounts:
    async def test_search_by_name_or_email_paged(self, api: Api) -> None:
        marker = unique_email("m").split("@")[0]
        await tenant(api, accountName=f"Alpha {marker}")
        await tenant(api, accountName=f"Beta {marker}")
        by_mail = await tenant(api, accountName="Gamma", email=f"{marker}-x@example.com")
        token = await staff_token(api)

        page = (await api(ACCOUNTS, {"first": 2, "search": marker.upper()}, token=token))["data"]["accounts"]
        assert page["totalCount"] == 3
        assert page["pageInfo"]["hasNextPage"] is True
        after = page["pageInfo"]["endCursor"]
        rest = await api(ACCOUNTS, {"first": 2, "search": marker, "after": after}, token=token)
        names = [e["node"]["name"] for e in page["edges"] + rest["data"]["accounts"]["edges"]]
        assert names == ["Gamma", f"Beta {marker}", f"Alpha {marker}"]  # newest first
        assert by_mail["email"].startswith(marker)

    async def test_two_statements_whatever_the_page_size(self, api: Api) -> None:
        for _ in range(3):
            await tenant(api)
        token = await staff_token(api)
        small, _ = await statements_of(api, token, ACCOUNTS, {"first": 1})
        large, data = await statements_of(api, token, ACCOUNTS, {"first": 3})
        assert len(data["accounts"]["edges"]) == 3
        # authentication (1), the page (1), its total (1)
        assert small == large == 3, (small, large)

    async def test_only_staff(self, api: Api) -> None:
        account = await tenant(api)
        result = await api(ACCOUNTS, {"search": "x"}, token=account["token"])
        assert result["data"] is None
        assert result["errors"][0]["extensions"]["code"] == "PERMISSION_DENIED"

    async def test_search_too_long_is_refused(self, api: Api) -> None:
        token = await staff_token(api)
        result = await api(ACCOUNTS, {"search": "x" * 201}, token=token)
        assert result["errors"][0]["extensions"]["code"] == "INVALID"


class TestAccountUpdate:
    async def test_admin_changes_name_and_locale(self, api: Api) -> None:
        account = await tenant(api)
        result = await api(ACCOUNT_UPDATE, {"input": {"locale": "fr", "name": "Neu"}}, token=account["token"])
        assert result["data"]["accountUpdate"] == {"account": {"name": "Neu", "locale": "fr"}, "errors": []}

    async def test_bad_locale_on_its_field(self, api: Api) -> None:
        account = await tenant(api)
        result = await api(ACCOUNT_UPDATE, {"input": {"locale": "xx", "name": " "}}, token=account["token"])
        errors = result["data"]["accountUpdate"]["errors"]
        assert {tuple(e["field"]) for e in errors} == {("input", "name"), ("input", "locale")}

    async def test_member_may_not(self, api: Api) -> None:
        account = await tenant(api)
        token = await member(api, account["token"], "MEMBER")
        result = await api(ACCOUNT_UPDATE, {"input": {"locale": "de"}}, token=token)
        assert result["data"]["accountUpdate"]["errors"][0]["code"] == "PERMISSION_DENIED"


BY_NUMBER = """
query ByNumber($number: String!) {
  voucherOrders(first: 1, filter: {number: $number}) { totalCount edges { node { number } } }
}"""


class TestOrderByNumber:
    async def test_finds_the_tenants_order_only(self, api: Api) -> None:
        seller = await partner(api)
        placed = await order(api, seller["token"], paymentMethod="ACCOUNT_BALANCE")
        number = placed["order"]["number"]
        answer = await api(BY_NUMBER, {"number": number.lower()}, token=seller["token"])
        assert "errors" not in answer, answer
        found = answer["data"]["voucherOrders"]
        assert found == {"totalCount": 1, "edges": [{"node": {"number": number}}]}
        other = await partner(api, balance=None)
        theirs = (await api(BY_NUMBER, {"number": number}, token=other["token"]))["data"]["voucherOrders"]
        assert theirs == {"totalCount": 0, "edges": []}
