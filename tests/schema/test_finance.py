"""The account balance through the API: settings, deposits, idempotency, roles, staff adjustments."""

from __future__ import annotations

from models import LedgerEntry
from services import staff
from tests.support.api import Api
from tests.support.factories import (
    DEPOSIT,
    PASSWORD,
    deposit,
    member,
    request_outbox_rows,
    sign_in,
    tenant,
    unique_email,
)

SETTINGS = """{ viewer { account { financeSettings {
  billToBalanceEnabled creditCardEnabled defaultPaymentMethod lowBalanceThreshold { amount currencyCode } } } } }"""
UPDATE = """
mutation Update($input: FinanceSettingsUpdateInput!) {
  financeSettingsUpdate(input: $input) {
    financeSettings { billToBalanceEnabled creditCardEnabled defaultPaymentMethod lowBalanceThreshold { amount } }
    errors { code field message }
  }
}"""
BALANCE = """{ viewer { account { id balance { amount }
  ledger(first: 50) { totalCount edges { node { kind amount { amount } balanceAfter { amount } memo } } } } } }"""
LEDGER_BY_KIND = """query L($kinds: [LedgerEntryKind!]) { viewer { account {
  ledger(filter: {kinds: $kinds}) { totalCount edges { node { kind } } } } } }"""
ADJUST = """
mutation Adjust($input: BalanceAdjustInput!) {
  balanceAdjust(input: $input) {
    ledgerEntry { kind amount { amount } memo } account { balance { amount } } errors { code field message }
  }
}"""


async def balance_and_entries(api: Api, token: str) -> tuple[str, int]:
    account = (await api(BALANCE, token=token))["data"]["viewer"]["account"]
    return account["balance"]["amount"], account["ledger"]["totalCount"]


class TestFinanceSettings:
    async def test_new_accounts_pay_by_card_by_default(self, api: Api) -> None:
        a = await tenant(api)
        settings = (await api(SETTINGS, token=a["token"]))["data"]["viewer"]["account"]["financeSettings"]
        assert settings == {
            "billToBalanceEnabled": False,
            "creditCardEnabled": True,
            "defaultPaymentMethod": "CREDIT_CARD",
            "lowBalanceThreshold": None,
        }

    async def test_enable_balance_make_it_default_and_set_threshold(self, api: Api) -> None:
        a = await tenant(api)
        result = await api(
            UPDATE,
            {
                "input": {
                    "billToBalanceEnabled": True,
                    "defaultPaymentMethod": "ACCOUNT_BALANCE",
                    "lowBalanceThreshold": "250.00",
                }
            },
            token=a["token"],
        )
        assert result["data"]["financeSettingsUpdate"] == {
            "financeSettings": {
                "billToBalanceEnabled": True,
                "creditCardEnabled": True,
                "defaultPaymentMethod": "ACCOUNT_BALANCE",
                "lowBalanceThreshold": {"amount": "250.00"},
            },
            "errors": [],
        }
        cleared = await api(UPDATE, {"input": {"clearLowBalanceThreshold": True}}, token=a["token"])
        assert cleared["data"]["financeSettingsUpdate"]["financeSettings"]["lowBalanceThreshold"] is None

    async def test_rules_are_errors_on_the_right_field(self, api: Api) -> None:
        a = await tenant(api)
        cases = [
            ({"creditCardEnabled": False}, ["input", "creditCardEnabled"]),
            ({"defaultPaymentMethod": "ACCOUNT_BALANCE"}, ["input", "defaultPaymentMethod"]),
            ({"billToBalanceEnabled": True, "creditCardEnabled": False}, ["input", "defaultPaymentMethod"]),
            ({"lowBalanceThreshold": "-1"}, ["input", "lowBalanceThreshold"]),
            ({"lowBalanceThreshold": "1e3"}, ["input", "lowBalanceThreshold"]),
        ]
        for update, field in cases:
            errors = (await api(UPDATE, {"input": update}, token=a["token"]))["data"]["financeSettingsUpdate"]["errors"]
            assert [(e["code"], e["field"]) for e in errors] == [("INVALID", field)], update
        settings = (await api(SETTINGS, token=a["token"]))["data"]["viewer"]["account"]["financeSettings"]
        assert settings["creditCardEnabled"] is True
        assert settings["defaultPaymentMethod"] == "CREDIT_CARD"

    async def test_switching_the_default_and_disabling_the_other_method(self, api: Api) -> None:
        a = await tenant(api)
        result = await api(
            UPDATE,
            {
                "input": {
                    "billToBalanceEnabled": True,
                    "creditCardEnabled": False,
                    "defaultPaymentMethod": "ACCOUNT_BALANCE",
                }
            },
            token=a["token"],
        )
        assert result["data"]["financeSettingsUpdate"]["errors"] == []

    async def test_members_read_but_do_not_change(self, api: Api) -> None:
        a = await tenant(api)
        token = await member(api, a["token"], "MEMBER")
        refused = await api(UPDATE, {"input": {"billToBalanceEnabled": True}}, token=token)
        assert refused["data"]["financeSettingsUpdate"]["errors"][0]["code"] == "PERMISSION_DENIED"
        assert (await api(SETTINGS, token=token))["data"]["viewer"]["account"]["financeSettings"] is not None
        finance = await member(api, a["token"], "FINANCE")
        allowed = await api(UPDATE, {"input": {"billToBalanceEnabled": True}}, token=finance)
        assert allowed["data"]["financeSettingsUpdate"]["errors"] == []


class TestDeposit:
    async def test_each_sandbox_card(self, api: Api) -> None:
        a = await tenant(api)
        for token in ("tok_visa", "tok_mastercard"):
            result = await api(DEPOSIT, {"input": {"amount": "100.00", "cardToken": token}}, token=a["token"])
            payload = result["data"]["fundsDeposit"]
            assert payload["errors"] == []
            assert payload["ledgerEntry"]["kind"] == "DEPOSIT"
            assert payload["ledgerEntry"]["amount"] == {"amount": "100.00", "currencyCode": "USD"}
            assert payload["ledgerEntry"]["gatewayReference"].startswith("ch_sandbox_")
        assert await balance_and_entries(api, a["token"]) == ("200.00", 2)
        for token, code in (("tok_chargeDeclined", "PAYMENT_DECLINED"), ("tok_gatewayError", "PAYMENT_GATEWAY_ERROR")):
            result = await api(DEPOSIT, {"input": {"amount": "100.00", "cardToken": token}}, token=a["token"])
            payload = result["data"]["fundsDeposit"]
            assert payload["ledgerEntry"] is None
            assert payload["errors"][0]["code"] == code
        assert await balance_and_entries(api, a["token"]) == ("200.00", 2)

    async def test_bad_amounts_are_invalid_and_write_nothing(self, api: Api) -> None:
        a = await tenant(api)
        outbox_before = await request_outbox_rows()
        for amount in ("0", "-1", "100000000000000000000", "10.005", "NaN", "1e3", "9.99", "100000.01", "abc"):
            payload = await deposit(api, a["token"], amount)
            assert [(e["code"], e["field"]) for e in payload["errors"]] == [("INVALID", ["input", "amount"])], amount
        assert await balance_and_entries(api, a["token"]) == ("0.00", 0)
        assert await request_outbox_rows() == outbox_before

    async def test_members_cannot_deposit(self, api: Api) -> None:
        a = await tenant(api)
        token = await member(api, a["token"], "MEMBER")
        assert (await deposit(api, token, "50.00"))["errors"][0]["code"] == "PERMISSION_DENIED"
        assert (await deposit(api, await member(api, a["token"], "FINANCE"), "50.00"))["errors"] == []

    async def test_an_azure_key_vault_key_cannot_charge_a_card(self, api: Api) -> None:
        a = await tenant(api)
        key = await api(
            'mutation { apiKeyCreate(input: {name: "akv", channel: AZURE_KEY_VAULT}) { secret } }', token=a["token"]
        )
        payload = await deposit(api, key["data"]["apiKeyCreate"]["secret"], "50.00")
        assert payload["errors"][0]["code"] == "PAYMENT_METHOD_DISABLED"


class TestIdempotency:
    async def test_replay_returns_the_first_result_and_moves_nothing(self, api: Api) -> None:
        a = await tenant(api)
        first = await deposit(api, a["token"], "75.00", idempotencyKey="dep-1")
        second = await deposit(api, a["token"], "75.00", idempotencyKey="dep-1")
        assert first["ledgerEntry"] == second["ledgerEntry"]
        assert first["errors"] == []
        assert await balance_and_entries(api, a["token"]) == ("75.00", 1)

    async def test_same_key_other_input_is_refused(self, api: Api) -> None:
        a = await tenant(api)
        await deposit(api, a["token"], "75.00", idempotencyKey="dep-2")
        outbox_before = await request_outbox_rows()
        other = await deposit(api, a["token"], "80.00", idempotencyKey="dep-2")
        assert [(e["code"], e["field"]) for e in other["errors"]] == [
            ("IDEMPOTENCY_KEY_REUSED", ["input", "idempotencyKey"])
        ]
        assert await balance_and_entries(api, a["token"]) == ("75.00", 1)
        assert await request_outbox_rows() == outbox_before

    async def test_keys_are_scoped_per_account(self, api: Api) -> None:
        a, b = await tenant(api), await tenant(api)
        first = await deposit(api, a["token"], "75.00", idempotencyKey="shared")
        theirs = await deposit(api, b["token"], "75.00", idempotencyKey="shared")
        assert theirs["errors"] == []
        assert theirs["ledgerEntry"]["id"] != first["ledgerEntry"]["id"]
        assert await balance_and_entries(api, b["token"]) == ("75.00", 1)

    async def test_a_declined_attempt_leaves_the_key_free(self, api: Api) -> None:
        a = await tenant(api)
        declined = await api(
            DEPOSIT,
            {"input": {"amount": "20.00", "cardToken": "tok_chargeDeclined", "idempotencyKey": "k"}},
            token=a["token"],
        )
        assert declined["data"]["fundsDeposit"]["errors"][0]["code"] == "PAYMENT_DECLINED"
        retried = await api(
            DEPOSIT,
            {"input": {"amount": "20.00", "cardToken": "tok_chargeDeclined", "idempotencyKey": "k"}},
            token=a["token"],
        )
        assert retried["data"]["fundsDeposit"]["errors"][0]["code"] == "PAYMENT_DECLINED"


class TestBalanceAdjust:
    async def _staff_token(self, api: Api) -> str:
        email = unique_email("staff")
        await staff.create_staff(email=email, password=PASSWORD)
        return await sign_in(api, email)

    async def test_staff_credit_and_debit_never_below_zero(self, api: Api) -> None:
        a = await tenant(api)
        account_id = (await api(BALANCE, token=a["token"]))["data"]["viewer"]["account"]["id"]
        staff_token = await self._staff_token(api)

        async def adjust(amount: str, memo: str = "goodwill", key: str | None = None) -> dict:
            variables = {"input": {"accountId": account_id, "amount": amount, "memo": memo, "idempotencyKey": key}}
            return (await api(ADJUST, variables, token=staff_token))["data"]["balanceAdjust"]

        assert (await adjust("40.00", key="adj-1"))["account"]["balance"]["amount"] == "40.00"
        assert (await adjust("40.00", key="adj-1"))["account"]["balance"]["amount"] == "40.00"  # replayed
        assert (await adjust("-40.01"))["errors"][0]["code"] == "INSUFFICIENT_FUNDS"
        assert (await adjust("-15.00"))["ledgerEntry"] == {
            "kind": "ADJUSTMENT",
            "amount": {"amount": "-15.00"},
            "memo": "goodwill",
        }
        assert (await adjust("5.00", memo="  "))["errors"][0]["field"] == ["input", "memo"]
        assert (await adjust("0"))["errors"][0]["field"] == ["input", "amount"]
        assert await balance_and_entries(api, a["token"]) == ("25.00", 2)
        # a tenant's own admin is not staff
        variables = {"input": {"accountId": account_id, "amount": "1.00", "memo": "me"}}
        refused = (await api(ADJUST, variables, token=a["token"]))["data"]["balanceAdjust"]
        assert refused["errors"][0]["code"] == "PERMISSION_DENIED"


class TestLedger:
    async def test_filter_by_kind_and_members_read_it(self, api: Api) -> None:
        a = await tenant(api)
        await deposit(api, a["token"], "30.00")
        await deposit(api, a["token"], "20.00")
        token = await member(api, a["token"], "MEMBER")
        both = await api(LEDGER_BY_KIND, {"kinds": ["DEPOSIT"]}, token=token)
        none = await api(LEDGER_BY_KIND, {"kinds": ["PURCHASE", "REFUND"]}, token=token)
        assert both["data"]["viewer"]["account"]["ledger"]["totalCount"] == 2
        assert none["data"]["viewer"]["account"]["ledger"]["totalCount"] == 0
        assert await LedgerEntry.filter(memo="Card deposit").count() >= 2
