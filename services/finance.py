"""Finance settings, card deposits and staff balance adjustments."""

from __future__ import annotations

import logging
from decimal import Decimal

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from models import (
    Account,
    ApiKeyChannel,
    FinanceSettings,
    LedgerEntry,
    LedgerEntryKind,
    PaymentMethod,
    Role,
    WebhookEventType,
)
from services import events, idempotency, outbox, webhook_events
from services.actors import Actor
from services.card_payments import CardPayment, charge_then_commit
from services.errors import DomainError, ErrorCode, invalid, not_found
from services.events import EventBus
from services.ledger import finance_contacts, post_entry
from services.mail import SEND_EMAIL, email_payload
from services.money import to_decimal, to_minor
from services.payments import Charge, PaymentGateway
from services.validation import clean_text

log = logging.getLogger(__name__)

# Deposit bounds, in major units of the account's currency.
DEPOSIT_MIN = Decimal("10.00")
DEPOSIT_MAX = Decimal("100000.00")
ADJUST_MAX = Decimal("1000000.00")
DEPOSIT_RECEIPT = "deposit_receipt"


async def get_settings(account_id: int) -> FinanceSettings:
    return await FinanceSettings.get(account_id=account_id)


async def update_settings(
    *,
    actor: Actor,
    bus: EventBus,
    bill_to_balance_enabled: bool | None = None,
    credit_card_enabled: bool | None = None,
    default_payment_method: PaymentMethod | None = None,
    low_balance_threshold: str | None = None,
    clear_low_balance_threshold: bool = False,
) -> FinanceSettings:
    """ADMIN/FINANCE change payment settings; the default method is always an enabled one."""
    actor.require_role(Role.ADMIN, Role.FINANCE)
    account_id = actor.require_account()
    async with in_transaction() as conn:
        account = await Account.get(id=account_id, using_db=conn)
        # Lock the row (PostgreSQL) so two concurrent edits do not lose one another.
        current = await FinanceSettings.filter(account_id=account_id).using_db(conn).select_for_update().get()
        balance_on = current.bill_to_balance_enabled if bill_to_balance_enabled is None else bill_to_balance_enabled
        card_on = current.credit_card_enabled if credit_card_enabled is None else credit_card_enabled
        default = default_payment_method or current.default_payment_method
        if not balance_on and not card_on:
            field = "credit_card_enabled" if credit_card_enabled is False else "bill_to_balance_enabled"
            raise invalid(field, "At least one payment method stays enabled.")
        enabled = {PaymentMethod.ACCOUNT_BALANCE: balance_on, PaymentMethod.CREDIT_CARD: card_on}
        if not enabled[default]:
            raise invalid("default_payment_method", "The default payment method must be an enabled one.")
        threshold = current.low_balance_threshold
        if clear_low_balance_threshold and low_balance_threshold is not None:
            raise invalid("low_balance_threshold", "Set a threshold or clear it, not both.")
        if clear_low_balance_threshold:
            threshold = None
        elif low_balance_threshold is not None:
            threshold = to_minor(low_balance_threshold, account.currency, field="low_balance_threshold")
            if threshold < 0:
                raise invalid("low_balance_threshold", "The threshold cannot be negative.")
        # Re-arming rule: a new threshold notifies on the next debit that crosses it,
        # so it is armed only while the balance is at or above it now.
        armed = current.low_balance_armed
        if threshold != current.low_balance_threshold:
            armed = threshold is None or account.balance >= threshold
        try:
            await (
                FinanceSettings.filter(account_id=account_id)
                .using_db(conn)
                .update(
                    bill_to_balance_enabled=balance_on,
                    credit_card_enabled=card_on,
                    default_payment_method=default,
                    low_balance_threshold=threshold,
                    low_balance_armed=armed,
                )
            )
        except IntegrityError as exc:
            raise invalid("default_payment_method", "The default payment method must be an enabled one.") from exc
    await events.publish(bus, [events.account_changed(account_id, "SETTINGS")])
    return await FinanceSettings.get(account_id=account_id)


def _amount(account: Account, amount: str, *, field: str, low: Decimal, high: Decimal) -> int:
    minor = to_minor(amount, account.currency, field=field)
    if not to_minor(low, account.currency, field=field) <= minor <= to_minor(high, account.currency, field=field):
        raise invalid(field, f"Enter an amount from {low} to {high} {account.currency}.")
    return minor


async def deposit(
    *,
    actor: Actor,
    amount: str,
    card_token: str,
    idempotency_key: str | None,
    gateway: PaymentGateway,
    public_url: str,
    bus: EventBus,
) -> LedgerEntry:
    """ADMIN/FINANCE charge a card and credit the balance; a receipt e-mail follows."""
    actor.require_role(Role.ADMIN, Role.FINANCE)
    account_id = actor.require_account()
    if actor.channel == ApiKeyChannel.AZURE_KEY_VAULT:
        raise DomainError(
            ErrorCode.PAYMENT_METHOD_DISABLED, "Azure Key Vault keys pay by account balance only.", "card_token"
        )
    account = await Account.get(id=account_id)
    minor = _amount(account, amount, field="amount", low=DEPOSIT_MIN, high=DEPOSIT_MAX)
    token = clean_text(card_token, field="card_token", max_length=255)
    key = idempotency.clean_key(idempotency_key)
    begun = await idempotency.begin(
        account_id=account_id, key=key, operation="fundsDeposit", request={"amount": minor, "token": token}
    )
    if begun.replay is not None:
        return await LedgerEntry.get(id=begun.replay["ledger_entry_id"], account_id=account_id)
    payment = CardPayment(gateway, account_id, account.currency, minor, token, "deposit", "Nothing was deposited.")

    async def credit(conn: BaseDBAsyncClient, charge: Charge) -> LedgerEntry:
        entry = await post_entry(
            conn,
            account_id=account_id,
            kind=LedgerEntryKind.DEPOSIT,
            amount=minor,
            memo="Card deposit",
            actor=actor,
            gateway_reference=charge.reference,
            public_url=public_url,
        )
        await _receipt(conn, account, entry, public_url)
        await webhook_events.emit(
            conn, account_id=account_id, event=WebhookEventType.DEPOSIT_SUCCEEDED, data=_deposited(account, entry)
        )
        return entry

    entry = await charge_then_commit(payment, begun, credit, lambda entry: {"ledger_entry_id": entry.id})
    outbox.notify()
    await events.publish(bus, [events.account_changed(account_id, "DEPOSIT")])
    return entry


def _deposited(account: Account, entry: LedgerEntry) -> dict[str, object]:
    ledger_entry = {
        "id": webhook_events.gid("LedgerEntry", entry.id),
        "kind": entry.kind.value,
        "amount": webhook_events.money(entry.amount, account.currency),
        "balanceAfter": webhook_events.money(entry.balance_after, account.currency),
        "createdAt": webhook_events.instant(entry.created_at),
    }
    return {"ledgerEntry": ledger_entry}


async def _receipt(conn: BaseDBAsyncClient, account: Account, entry: LedgerEntry, public_url: str) -> None:
    recipients = await finance_contacts(conn, account.id)
    if not recipients:
        return
    money = f"{to_decimal(entry.amount, account.currency)} {account.currency}"
    await outbox.add(
        SEND_EMAIL,
        email_payload(
            DEPOSIT_RECEIPT,
            to=recipients,
            locale=account.locale,
            context={
                "account_name": account.name,
                "amount": money,
                "balance": f"{to_decimal(entry.balance_after, account.currency)} {account.currency}",
                "reference": entry.gateway_reference or "",
                "entry_id": entry.id,
                "public_url": public_url,
            },
        ),
        using_db=conn,
    )


async def adjust(
    *,
    actor: Actor,
    account_id: int,
    amount: str,
    memo: str,
    idempotency_key: str | None,
    bus: EventBus,
    public_url: str = "",
) -> LedgerEntry:
    """Staff credit or debit a balance, with a reason; never below zero."""
    actor.require_staff()
    account = await Account.filter(id=account_id).first()
    if account is None:
        raise not_found("account_id", "No such account.")
    minor = to_minor(amount, account.currency, field="amount")
    if minor == 0 or abs(minor) > to_minor(ADJUST_MAX, account.currency, field="amount"):
        raise invalid("amount", f"Enter a non-zero amount up to {ADJUST_MAX} {account.currency} either way.")
    reason = clean_text(memo, field="memo", max_length=500)
    key = idempotency.clean_key(idempotency_key)

    async def effect(conn: BaseDBAsyncClient) -> idempotency.Response:
        entry = await post_entry(
            conn,
            account_id=account_id,
            kind=LedgerEntryKind.ADJUSTMENT,
            amount=minor,
            memo=reason,
            actor=actor,
            public_url=public_url,
        )
        return {"ledger_entry_id": entry.id}

    response = await idempotency.once(
        account_id=account_id,
        key=key,
        operation="balanceAdjust",
        request={"amount": minor, "memo": reason},
        effect=effect,
    )
    outbox.notify()
    await events.publish(bus, [events.account_changed(account_id, "ADJUSTMENT")])
    return await LedgerEntry.get(id=response["ledger_entry_id"])
