"""A demo partner for a first look: an account with a balance and a few voucher orders.

Every run creates a new account under a fresh e-mail, so running it twice is
harmless. Money moves only through the services a real partner goes through:
the deposit through the ledger, the orders through `place_order` (two paid from
the balance, one by a sandbox card).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from tortoise.transactions import in_transaction

from models import Account, LedgerEntryKind, PaymentMethod, Role, VoucherOrder
from services import accounts, finance, staff
from services.actors import Actor
from services.catalogue import LineRequest
from services.codes import CodeCipher
from services.events import EventBus
from services.ledger import post_entry
from services.money import to_minor
from services.orders import OrderRequest, place_order
from services.payments import PaymentGateway

ACCOUNT_NAME = "Demo Partner GmbH"
LOCALE = "de"
DEPOSIT = "5000.00"
DEPOSIT_MEMO = "Demo deposit"
CARD_TOKEN = "tok_visa"

ORDERS = (
    OrderRequest(
        lines=[LineRequest("BASIC_OV", quantity=5, validity_years=1, fqdns=1, wildcards=0)],
        payment_method=PaymentMethod.ACCOUNT_BALANCE,
    ),
    OrderRequest(
        lines=[
            LineRequest("SECURE_SITE_OV", quantity=2, validity_years=1, fqdns=2, wildcards=0),
            LineRequest("BASIC_EV", quantity=2, validity_years=2, fqdns=1, wildcards=0),
        ],
        customer_name="Beispiel AG",
        notes="Rechnung RE-2026-0042",
        payment_method=PaymentMethod.ACCOUNT_BALANCE,
    ),
    OrderRequest(
        lines=[LineRequest("BASIC_OV", quantity=1, validity_years=1, fqdns=1, wildcards=1)],
        customer_name="Muster Handel KG",
        payment_method=PaymentMethod.CREDIT_CARD,
        card_token=CARD_TOKEN,
    ),
)


@dataclass(frozen=True)
class Demo:
    email: str
    password: str
    account: Account
    orders: list[VoucherOrder]


async def create_demo(*, cipher: CodeCipher, public_url: str, gateway: PaymentGateway, bus: EventBus) -> Demo:
    """A new partner account (ADMIN user, balance billing on, 5,000.00 deposited) with three orders."""
    email = f"demo-{secrets.token_hex(5)}@example.com"
    password = secrets.token_urlsafe(15)
    user = await accounts.sign_up(
        email=email, password=password, account_name=ACCOUNT_NAME, locale=LOCALE, public_url=public_url
    )
    admin = Actor(user_id=user.id, account_id=user.account_id, role=Role.ADMIN)
    account_id = admin.require_account()
    account = await staff.set_partner(account_id=account_id, enabled=True, bus=bus)
    await finance.update_settings(
        actor=admin, bus=bus, bill_to_balance_enabled=True, default_payment_method=PaymentMethod.ACCOUNT_BALANCE
    )
    async with in_transaction() as conn:
        await post_entry(
            conn,
            account_id=account_id,
            kind=LedgerEntryKind.DEPOSIT,
            amount=to_minor(DEPOSIT, account.currency, field="amount"),
            memo=DEPOSIT_MEMO,
            public_url=public_url,
        )
    orders = [
        await place_order(actor=admin, request=request, gateway=gateway, cipher=cipher, public_url=public_url, bus=bus)
        for request in ORDERS
    ]
    return Demo(email=email, password=password, account=await Account.get(id=account_id), orders=orders)
