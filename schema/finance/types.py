"""Types of the balance domain: finance settings and ledger entries."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import strawberry
from strawberry import relay

from models import FinanceSettings as FinanceSettingsModel
from models import LedgerEntry as LedgerEntryModel
from models import LedgerEntryKind, PaymentMethod
from schema.common import Money, ordered, pks
from schema.context import Info

strawberry.enum(LedgerEntryKind, name="LedgerEntryKind")
strawberry.enum(PaymentMethod, name="PaymentMethod")


@strawberry.type(description="How the account pays; the default is always an enabled method.")
class FinanceSettings:
    bill_to_balance_enabled: bool
    credit_card_enabled: bool
    default_payment_method: PaymentMethod
    low_balance_threshold: Money | None = strawberry.field(
        description="An e-mail goes to ADMIN and FINANCE users when a debit takes the balance below it."
    )

    @classmethod
    def of(cls, settings: FinanceSettingsModel, currency: str) -> FinanceSettings:
        threshold = settings.low_balance_threshold
        return cls(
            bill_to_balance_enabled=settings.bill_to_balance_enabled,
            credit_card_enabled=settings.credit_card_enabled,
            default_payment_method=settings.default_payment_method,
            low_balance_threshold=None if threshold is None else Money.of(threshold, currency),
        )


@strawberry.type(description="One movement of the balance. Entries are never changed or deleted.")
class LedgerEntry(relay.Node):
    id: relay.NodeID[int]
    kind: LedgerEntryKind
    amount: Money = strawberry.field(description="Positive: a credit; negative: a debit.")
    balance_after: Money
    memo: str
    gateway_reference: str | None
    created_at: datetime
    by_api_key: bool = strawberry.field(description="Whether an API key (not a person) made it.")

    @classmethod
    def of(cls, entry: LedgerEntryModel, currency: str) -> LedgerEntry:
        return cls(
            id=entry.id,
            kind=entry.kind,
            amount=Money.of(entry.amount, currency),
            balance_after=Money.of(entry.balance_after, currency),
            memo=entry.memo,
            gateway_reference=entry.gateway_reference,
            created_at=entry.created_at,
            by_api_key=entry.actor_api_key_id is not None,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]  # Strawberry declares it with overloads
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[LedgerEntry | None]:
        actor = info.context.actor
        if actor is None or actor.account_id is None:
            return [None for _ in node_ids]
        rows = await LedgerEntryModel.filter(account_id=actor.account_id, id__in=pks(node_ids)).select_related(
            "account"
        )
        return ordered(rows, node_ids, lambda row: cls.of(row, row.account.currency))


@strawberry.input
class LedgerFilter:
    kinds: list[LedgerEntryKind] | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
