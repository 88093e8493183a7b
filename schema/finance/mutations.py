"""Finance settings, deposits and staff adjustments: the balance mutations."""

from __future__ import annotations

import strawberry

from models import Account as AccountModel
from models import LedgerEntry as LedgerEntryModel
from models import PaymentMethod
from schema.accounts import Account
from schema.common import DecimalString, node_pk
from schema.context import Info
from schema.errors import UserError, user_errors
from schema.finance.types import FinanceSettings, LedgerEntry
from schema.permissions import IsAuthenticated, actor_of
from services import finance
from services.errors import DomainError


@strawberry.input
class FinanceSettingsUpdateInput:
    bill_to_balance_enabled: bool | None = None
    credit_card_enabled: bool | None = None
    default_payment_method: PaymentMethod | None = None
    low_balance_threshold: DecimalString | None = None
    clear_low_balance_threshold: bool = False


@strawberry.input
class FundsDepositInput:
    amount: DecimalString
    card_token: str = strawberry.field(description="A token from the payment provider's card form, never a number.")
    idempotency_key: str | None = None


@strawberry.input
class BalanceAdjustInput:
    account_id: strawberry.ID
    amount: DecimalString = strawberry.field(description="Positive credits, negative debits.")
    memo: str
    idempotency_key: str | None = None


@strawberry.type
class FinanceSettingsUpdatePayload:
    finance_settings: FinanceSettings | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class FundsDepositPayload:
    ledger_entry: LedgerEntry | None = None
    account: Account | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class BalanceAdjustPayload:
    ledger_entry: LedgerEntry | None = None
    account: Account | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def _entry_and_account(entry: LedgerEntryModel) -> tuple[LedgerEntry, Account]:
    account = await AccountModel.get(id=entry.account_id)
    return LedgerEntry.of(entry, account.currency), Account.of(account)


@strawberry.type
class FinanceMutation:
    @strawberry.mutation(permission_classes=[IsAuthenticated], description="ADMIN, FINANCE: payment settings.")
    async def finance_settings_update(
        self, info: Info, input: FinanceSettingsUpdateInput
    ) -> FinanceSettingsUpdatePayload:
        actor = actor_of(info)
        try:
            settings = await finance.update_settings(
                actor=actor,
                bus=info.context.resources.bus,
                bill_to_balance_enabled=input.bill_to_balance_enabled,
                credit_card_enabled=input.credit_card_enabled,
                default_payment_method=input.default_payment_method,
                low_balance_threshold=input.low_balance_threshold,
                clear_low_balance_threshold=input.clear_low_balance_threshold,
            )
        except DomainError as error:
            return FinanceSettingsUpdatePayload(errors=user_errors(error))
        account = await AccountModel.get(id=settings.account_id)
        return FinanceSettingsUpdatePayload(finance_settings=FinanceSettings.of(settings, account.currency))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated], description="ADMIN, FINANCE: charge a card and credit the balance."
    )
    async def funds_deposit(self, info: Info, input: FundsDepositInput) -> FundsDepositPayload:
        try:
            entry = await finance.deposit(
                actor=actor_of(info),
                amount=input.amount,
                card_token=input.card_token,
                idempotency_key=input.idempotency_key,
                gateway=info.context.resources.gateway,
                public_url=info.context.settings.public_url,
                bus=info.context.resources.bus,
            )
        except DomainError as error:
            return FundsDepositPayload(errors=user_errors(error))
        ledger_entry, account = await _entry_and_account(entry)
        return FundsDepositPayload(ledger_entry=ledger_entry, account=account)

    @strawberry.mutation(
        permission_classes=[IsAuthenticated], description="Staff: credit or debit a balance, with a reason."
    )
    async def balance_adjust(self, info: Info, input: BalanceAdjustInput) -> BalanceAdjustPayload:
        try:
            entry = await finance.adjust(
                actor=actor_of(info),
                account_id=node_pk(input.account_id, Account),
                amount=input.amount,
                memo=input.memo,
                idempotency_key=input.idempotency_key,
                public_url=info.context.settings.public_url,
                bus=info.context.resources.bus,
            )
        except DomainError as error:
            return BalanceAdjustPayload(errors=user_errors(error))
        ledger_entry, account = await _entry_and_account(entry)
        return BalanceAdjustPayload(ledger_entry=ledger_entry, account=account)
