"""Guarantees the database holds by itself, on both stores, whatever the code above does."""

from __future__ import annotations

import pytest
from tortoise import connections
from tortoise.exceptions import IntegrityError, OperationalError

from models import Account, LedgerEntry, LedgerEntryKind, User

REFUSED = (IntegrityError, OperationalError)


async def _account_with_entry() -> tuple[Account, LedgerEntry]:
    account = await Account.create(name="Ledger test", balance=1000)
    entry = await LedgerEntry.create(
        account=account, kind=LedgerEntryKind.DEPOSIT, amount=1000, balance_after=1000, memo="first"
    )
    return account, entry


class TestLedgerIsAppendOnly:
    async def test_orm_update_is_refused(self, db: None) -> None:
        _, entry = await _account_with_entry()
        with pytest.raises(REFUSED, match="append-only"):
            await LedgerEntry.filter(id=entry.id).update(amount=1)
        assert (await LedgerEntry.get(id=entry.id)).amount == 1000

    async def test_sql_update_and_delete_are_refused(self, db: None) -> None:
        _, entry = await _account_with_entry()
        conn = connections.get("default")
        with pytest.raises(REFUSED, match="append-only"):
            await conn.execute_script(f"UPDATE ledger_entry SET memo = 'changed' WHERE id = {entry.id}")
        with pytest.raises(REFUSED, match="append-only"):
            await conn.execute_script(f"DELETE FROM ledger_entry WHERE id = {entry.id}")
        with pytest.raises(REFUSED, match="append-only"):
            await LedgerEntry.filter(id=entry.id).delete()
        assert (await LedgerEntry.get(id=entry.id)).memo == "first"

    async def test_inserts_are_allowed(self, db: None) -> None:
        account, _ = await _account_with_entry()
        await LedgerEntry.create(account=account, kind=LedgerEntryKind.PURCHASE, amount=-10, balance_after=990)
        assert await LedgerEntry.filter(account=account).count() == 2


class TestConstraints:
    async def test_balance_never_below_zero(self, db: None) -> None:
        account = await Account.create(name="Check test", balance=5)
        with pytest.raises(IntegrityError):
            await Account.filter(id=account.id).update(balance=-1)
        assert (await Account.get(id=account.id)).balance == 5

    async def test_a_user_is_staff_or_belongs_to_an_account_with_a_role(self, db: None) -> None:
        with pytest.raises(IntegrityError):
            await User.create(email="orphan@example.com", password_hash="x", is_staff=False)
