"""`vouchsafe demo`: a partner with a balance and three orders, paid as a partner would pay."""

from __future__ import annotations

from infra.security import verify_password
from models import Account, FinanceSettings, LedgerEntry, LedgerEntryKind, PaymentMethod, Role, User, Voucher
from services import ledger
from services.codes import CodeCipher
from services.demo import Demo, create_demo
from services.events import KeptEvents
from services.money import to_decimal
from services.payments import SandboxGateway
from settings import Settings


async def demo(settings: Settings) -> Demo:
    return await create_demo(
        cipher=CodeCipher(settings.code_key), public_url=settings.public_url, gateway=SandboxGateway(), bus=KeptEvents()
    )


class TestCreateDemo:
    async def test_a_partner_with_5000_less_two_balance_orders_and_three_orders(
        self, db: None, settings: Settings
    ) -> None:
        # when
        result = await demo(settings)
        # then: the account
        account = await Account.get(id=result.account.id)
        assert (account.name, account.locale, account.is_partner) == ("Demo Partner GmbH", "de", True)
        user = await User.get(email=result.email)
        assert user.account_id == account.id
        assert user.role == Role.ADMIN
        assert verify_password(user.password_hash, result.password)
        finance = await FinanceSettings.get(account_id=account.id)
        assert finance.bill_to_balance_enabled
        assert finance.credit_card_enabled
        # the orders
        orders = result.orders
        assert len(orders) == 3
        assert [o.payment_method for o in orders] == [
            PaymentMethod.ACCOUNT_BALANCE,
            PaymentMethod.ACCOUNT_BALANCE,
            PaymentMethod.CREDIT_CARD,
        ]
        assert [o.voucher_count for o in orders] == [5, 4, 1]
        assert (orders[1].customer_name, orders[1].notes) == ("Beispiel AG", "Rechnung RE-2026-0042")
        assert orders[2].gateway_charge_reference is not None
        assert orders[2].gateway_charge_reference.startswith("ch_sandbox_")
        assert await Voucher.filter(account_id=account.id).count() == 10
        # the balance: 5,000.00 less the two balance orders, the card order charged to the card
        paid_from_balance = orders[0].total + orders[1].total
        assert account.balance == 500_000 - paid_from_balance
        assert result.account.balance == account.balance
        assert to_decimal(account.balance, "USD") > 0
        entries = await LedgerEntry.filter(account_id=account.id).order_by("id")
        assert [(e.kind, e.amount) for e in entries] == [
            (LedgerEntryKind.DEPOSIT, 500_000),
            (LedgerEntryKind.PURCHASE, -orders[0].total),
            (LedgerEntryKind.PURCHASE, -orders[1].total),
        ]
        assert entries[0].memo == "Demo deposit"
        assert account.id not in [m.account_id for m in await ledger.verify()]

    async def test_running_it_twice_makes_two_accounts(self, db: None, settings: Settings) -> None:
        # when
        first = await demo(settings)
        second = await demo(settings)
        # then
        assert first.email != second.email
        assert first.account.id != second.account.id
        assert second.account.balance == first.account.balance
