"""Test data through the public API or the services, with keyword overrides."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from services.events import KeptEvents
from tests.support.api import Api
from tests.support.documents import REDEEM, REVEAL

if TYPE_CHECKING:
    from services.actors import Actor

PASSWORD = "correct horse battery"

SIGN_UP = """
mutation SignUp($input: SignUpInput!) {
  signUp(input: $input) { user { id email role } errors { code field message } }
}"""

SIGN_IN = """
mutation SignIn($input: SignInInput!) {
  signIn(input: $input) { token expiresAt user { id email } errors { code field message } }
}"""

SIGN_OUT = "mutation { signOut { signedOut } }"


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


async def sign_up(api: Api, **overrides: Any) -> dict[str, Any]:
    data = {"email": unique_email(), "password": PASSWORD, "accountName": "Acme GmbH", "locale": "en", **overrides}
    result = await api(SIGN_UP, {"input": data})
    payload = result["data"]["signUp"]
    assert payload["errors"] == [], payload
    return {**data, "user": payload["user"]}


async def sign_in(api: Api, email: str, password: str = PASSWORD) -> str:
    result = await api(SIGN_IN, {"input": {"email": email, "password": password}})
    payload = result["data"]["signIn"]
    assert payload["errors"] == [], payload
    return str(payload["token"])


async def tenant(api: Api, **overrides: Any) -> dict[str, Any]:
    """A signed-up account and its ADMIN's token."""
    signed_up = await sign_up(api, **overrides)
    return {**signed_up, "token": await sign_in(api, signed_up["email"])}


USER_CREATE = """
mutation UserCreate($input: UserCreateInput!) { userCreate(input: $input) { user { id } errors { code } } }"""

DEPOSIT = """
mutation Deposit($input: FundsDepositInput!) {
  fundsDeposit(input: $input) {
    ledgerEntry { id kind amount { amount currencyCode } balanceAfter { amount } gatewayReference memo }
    account { balance { amount currencyCode } }
    errors { code field message }
  }
}"""


async def member(api: Api, admin_token: str, role: str) -> str:
    """A user of the admin's account with a role, signed in."""
    email = unique_email(role.lower())
    result = await api(USER_CREATE, {"input": {"email": email, "password": PASSWORD, "role": role}}, token=admin_token)
    assert result["data"]["userCreate"]["errors"] == []
    return await sign_in(api, email)


async def deposit(api: Api, token: str, amount: str, **extra: Any) -> dict[str, Any]:
    result = await api(DEPOSIT, {"input": {"amount": amount, "cardToken": "tok_visa", **extra}}, token=token)
    return dict(result["data"]["fundsDeposit"])


ORDER_CREATE = """
mutation Create($input: VoucherOrderCreateInput!) {
  voucherOrderCreate(input: $input) {
    order { id number status paymentMethod total { amount currencyCode } customerName notes
            lines { productCode quantity unitPrice { amount } linePrice { amount } } }
    errors { code field message }
  }
}"""

ENABLE_BALANCE = """mutation { financeSettingsUpdate(input: {billToBalanceEnabled: true}) { errors { code } } }"""


def line(product: str = "BASIC_OV", quantity: int = 2, years: int = 1, fqdns: int = 1, wildcards: int = 0) -> dict:
    return {
        "productCode": product,
        "quantity": quantity,
        "validityYears": years,
        "fqdns": fqdns,
        "wildcards": wildcards,
    }


async def partner(api: Api, *, balance: str | None = "5000.00", **overrides: Any) -> dict[str, Any]:
    """A partner account (voucher feature on, balance billing on, funded) and its ADMIN's token."""
    from models import Account, User
    from services import staff

    account = await tenant(api, **overrides)
    user = await User.get(email=account["email"])
    assert user.account_id is not None
    await staff.set_partner(account_id=user.account_id, enabled=True, bus=api.bus)
    await api(ENABLE_BALANCE, token=account["token"])
    if balance is not None:
        funded = await deposit(api, account["token"], balance)
        assert funded["errors"] == [], funded
    account["account_id"] = user.account_id
    account["account"] = await Account.get(id=user.account_id)
    return account


async def order(api: Api, token: str, *lines: dict, **extra: Any) -> dict[str, Any]:
    result = await api(ORDER_CREATE, {"input": {"lines": list(lines) or [line()], **extra}}, token=token)
    return dict(result["data"]["voucherOrderCreate"])


# Written by a worker that carries on a render_pdf job, never by a request: a test's own
# worker may be writing them while the test counts.
_WORKER_FOLLOW_UPS = ("render_pdf_chunk", "assemble_pdf")


async def request_outbox_rows() -> int:
    """Outbox rows written by requests (and by anything but a worker carrying on a PDF)."""
    from models import OutboxMessage

    return await OutboxMessage.exclude(task__in=_WORKER_FOLLOW_UPS).count()


async def tenant_admin(*, locale: str = "en", name: str = "Customer Ltd") -> Actor:
    """A new (not partner) account's ADMIN as an Actor (created directly: no password hashing)."""
    from models import Account, FinanceSettings, Role, User
    from services.actors import Actor

    account = await Account.create(name=name, locale=locale, is_partner=False)
    await FinanceSettings.create(account=account)
    user = await User.create(email=unique_email("admin"), password_hash="x", account=account, role=Role.ADMIN)
    return Actor(user_id=user.id, account_id=account.id, role=Role.ADMIN)


async def partner_admin(*, locale: str = "en", name: str = "Reseller Ltd") -> Actor:
    """A new partner account's ADMIN as an Actor: a tenant_admin whose account staff made a partner."""
    from services import staff

    actor = await tenant_admin(locale=locale, name=name)
    await staff.set_partner(account_id=actor.require_account(), enabled=True, bus=KeptEvents())
    return actor


async def balance_partner(*, funds: int = 0) -> Actor:
    """A partner_admin whose account pays by balance, funded with `funds` (minor units) by a deposit entry."""
    from tortoise.transactions import in_transaction

    from models import FinanceSettings, LedgerEntryKind
    from services.ledger import post_entry

    actor = await partner_admin()
    await FinanceSettings.filter(account_id=actor.account_id).update(bill_to_balance_enabled=True)
    if funds:
        async with in_transaction() as conn:
            await post_entry(conn, account_id=actor.require_account(), kind=LedgerEntryKind.DEPOSIT, amount=funds)
    return actor


async def codes_of(api: Api, p: dict, *lines: dict) -> list[str]:
    placed = await order(
        api, p["token"], *(lines or (line("BASIC_OV", 2, fqdns=2, wildcards=1),)), paymentMethod="ACCOUNT_BALANCE"
    )
    assert placed["errors"] == [], placed
    revealed = await api(REVEAL, {"id": placed["order"]["id"]}, token=p["token"])
    return [c["code"] for c in revealed["data"]["voucherCodesReveal"]["codes"]]


async def redeem(api: Api, token: str, code: str, cn: str = "www.example.com", **extra: Any) -> dict:
    result = await api(REDEEM, {"input": {"code": code, "commonName": cn, **extra}}, token=token)
    return dict(result["data"]["voucherRedeem"])
