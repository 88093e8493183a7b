"""The ledger: the only way a balance moves.

`post_entry` moves the balance with a conditional UPDATE (never below zero, on
both stores, whatever runs concurrently) and appends the entry, on the caller's
connection, inside the caller's transaction. Order services debit and refund
through it too.

Lock order, for every transaction that touches several of these rows: the
voucher order row first, then its vouchers, then the account row (taken here by
the balance UPDATE). Cancellation and redemption follow it, so they cannot
deadlock or both win.
"""

from __future__ import annotations

from dataclasses import dataclass

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import F

from models import Account, FinanceSettings, LedgerEntry, LedgerEntryKind, Role, User, WebhookEventType
from services import outbox, webhook_events
from services.actors import Actor
from services.errors import DomainError, ErrorCode, not_found
from services.mail import SEND_EMAIL, email_payload
from services.money import to_decimal

LOW_BALANCE = "low_balance"


def insufficient_funds(needed: int, balance: int, currency: str) -> DomainError:
    """How much it takes and how much there is, so the client can tell what to deposit."""
    # No input field: the balance, not any one value the caller sent, is short.
    return DomainError(
        ErrorCode.INSUFFICIENT_FUNDS,
        f"The account balance is too low: this needs {to_decimal(needed, currency)} {currency},"
        f" the balance is {to_decimal(balance, currency)} {currency}.",
    )


async def post_entry(
    conn: BaseDBAsyncClient,
    *,
    account_id: int,
    kind: LedgerEntryKind,
    amount: int,
    memo: str = "",
    actor: Actor | None = None,
    order_id: int | None = None,
    gateway_reference: str | None = None,
    public_url: str = "",
) -> LedgerEntry:
    """Move the balance by `amount` (negative: a debit) and append its entry; INSUFFICIENT_FUNDS below zero."""
    changed = (
        await Account.filter(id=account_id, balance__gte=-amount).using_db(conn).update(balance=F("balance") + amount)
    )
    if not changed:
        short = await Account.filter(id=account_id).using_db(conn).first()
        if short is None:
            raise not_found("account_id", "No such account.")
        raise insufficient_funds(-amount, short.balance, short.currency)
    account = await Account.get(id=account_id, using_db=conn)
    entry = await LedgerEntry.create(
        account_id=account_id,
        kind=kind,
        amount=amount,
        balance_after=account.balance,
        memo=memo,
        order_id=order_id,
        actor_user_id=actor.user_id if actor else None,
        actor_api_key_id=actor.api_key_id if actor else None,
        gateway_reference=gateway_reference,
        using_db=conn,
    )
    await _low_balance(conn, account, amount, public_url)
    return entry


async def _low_balance(conn: BaseDBAsyncClient, account: Account, amount: int, public_url: str) -> None:
    """Notify once when a debit crosses below the threshold; re-arm once the balance is back at or above it."""
    if amount < 0:
        crossed = (
            await FinanceSettings.filter(
                account_id=account.id, low_balance_armed=True, low_balance_threshold__gt=account.balance
            )
            .using_db(conn)
            .update(low_balance_armed=False)
        )
        if crossed:
            settings = await FinanceSettings.get(account_id=account.id, using_db=conn)
            threshold = settings.low_balance_threshold or 0
            low = {
                "balance": webhook_events.money(account.balance, account.currency),
                "threshold": webhook_events.money(threshold, account.currency),
            }
            await webhook_events.emit(conn, account_id=account.id, event=WebhookEventType.BALANCE_LOW, data=low)
            recipients = await finance_contacts(conn, account.id)
            if recipients:
                await outbox.add(
                    SEND_EMAIL,
                    email_payload(
                        LOW_BALANCE,
                        to=recipients,
                        locale=account.locale,
                        context={
                            "account_name": account.name,
                            "balance": f"{to_decimal(account.balance, account.currency)} {account.currency}",
                            "threshold": f"{to_decimal(settings.low_balance_threshold or 0, account.currency)} "
                            f"{account.currency}",
                            "public_url": public_url,
                        },
                    ),
                    using_db=conn,
                )
    elif amount > 0:
        await (
            FinanceSettings.filter(
                account_id=account.id, low_balance_armed=False, low_balance_threshold__lte=account.balance
            )
            .using_db(conn)
            .update(low_balance_armed=True)
        )


async def finance_contacts(conn: BaseDBAsyncClient, account_id: int) -> list[str]:
    """The e-mails of the account's ADMIN and FINANCE users."""
    emails = (
        await User.filter(account_id=account_id, is_active=True, role__in=[Role.ADMIN, Role.FINANCE])
        .using_db(conn)
        .order_by("id")
        .values_list("email", flat=True)
    )
    return [str(e) for e in emails]


@dataclass(frozen=True)
class Mismatch:
    account_id: int
    balance: int
    ledger_sum: int
    last_balance_after: int | None


async def verify() -> list[Mismatch]:
    """Every account whose balance differs from the sum of its ledger (I1) or from its last entry."""
    rows = await connections.get("default").execute_query_dict(
        """
        SELECT a.id AS account_id, a.balance AS balance,
               COALESCE((SELECT SUM(e.amount) FROM ledger_entry e WHERE e.account_id = a.id), 0) AS ledger_sum,
               (SELECT e.balance_after FROM ledger_entry e WHERE e.account_id = a.id
                ORDER BY e.id DESC LIMIT 1) AS last_balance_after
        FROM account a
        ORDER BY a.id
        """
    )
    mismatches = []
    for row in rows:
        balance, total, last = int(row["balance"]), int(row["ledger_sum"]), row["last_balance_after"]
        if balance != total or (last is not None and int(last) != balance):
            mismatches.append(Mismatch(row["account_id"], balance, total, None if last is None else int(last)))
    return mismatches
