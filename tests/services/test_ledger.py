"""The ledger under concurrency (PostgreSQL), the low-balance notification, reconciliation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tortoise.transactions import in_transaction

from models import Account, FinanceSettings, LedgerEntry, LedgerEntryKind, OutboxMessage, OutboxStatus, Role, User
from services import accounts, idempotency, ledger
from services.actors import Actor
from services.errors import DomainError, ErrorCode
from services.events import KeptEvents
from settings import Settings
from tests.support.api import Api
from tests.support.factories import PASSWORD, tenant, unique_email
from tests.support.mail import Inbox
from tests.support.running import run_jobs, shifted


async def funded_account(balance: int) -> Account:
    account = await Account.create(name="Race test")
    await FinanceSettings.create(account=account)
    async with in_transaction() as conn:
        await ledger.post_entry(conn, account_id=account.id, kind=LedgerEntryKind.DEPOSIT, amount=balance)
    return account


async def debit(account_id: int, amount: int) -> bool:
    """The debit the order service uses: its own transaction, compare-and-set."""
    try:
        async with in_transaction() as conn:
            await ledger.post_entry(conn, account_id=account_id, kind=LedgerEntryKind.PURCHASE, amount=-amount)
    except DomainError as error:
        if error.code != ErrorCode.INSUFFICIENT_FUNDS:
            raise
        return False
    return True


async def naive_debit(account_id: int, amount: int) -> bool:
    """Check-then-act, as it must not be written: read, decide, write back."""
    async with in_transaction() as conn:
        account = await Account.get(id=account_id, using_db=conn)
        if account.balance < amount:
            return False
        await asyncio.sleep(0.01)  # what a real request does between read and write
        await Account.filter(id=account_id).using_db(conn).update(balance=account.balance - amount)
    return True


@pytest.mark.postgres
class TestConcurrentDebits:
    async def test_exactly_33_of_50_succeed(self, db: None) -> None:
        # given: 1,000.00 and 50 concurrent purchases of 30.00, each on its own connection
        account = await funded_account(100_000)
        # when
        results = await asyncio.gather(*(debit(account.id, 3_000) for _ in range(50)))
        # then
        assert results.count(True) == 33
        assert results.count(False) == 17
        assert (await Account.get(id=account.id)).balance == 1_000
        assert account.id not in [m.account_id for m in await ledger.verify()]
        purchases = await LedgerEntry.filter(account_id=account.id, kind=LedgerEntryKind.PURCHASE).order_by("id")
        assert [e.balance_after for e in purchases] == [100_000 - 3_000 * i for i in range(1, 34)]

    async def test_the_naive_version_fails_this_test(self, db: None) -> None:
        # The race test above can fail: check-then-act loses updates on PostgreSQL.
        account = await funded_account(100_000)
        results = await asyncio.gather(*(naive_debit(account.id, 3_000) for _ in range(50)))
        balance = (await Account.get(id=account.id)).balance
        assert results.count(True) > 33 or balance != 1_000

    async def test_concurrent_twins_have_one_effect(self, db: None) -> None:
        account = await funded_account(100_000)
        staff = Actor(user_id=None, account_id=None, role=None, is_staff=True)

        async def adjust() -> Any:
            try:
                from services.finance import adjust as adjust_balance

                return (
                    await adjust_balance(
                        actor=staff,
                        account_id=account.id,
                        amount="-10.00",
                        memo="twin",
                        idempotency_key="twin-1",
                        bus=KeptEvents(),
                    )
                ).id
            except DomainError as error:
                return error.code

        outcomes = await asyncio.gather(*(adjust() for _ in range(10)))
        ids = {o for o in outcomes if isinstance(o, int)}
        assert len(ids) == 1
        assert all(isinstance(o, int) or o == ErrorCode.IDEMPOTENCY_KEY_IN_PROGRESS for o in outcomes)
        assert (await Account.get(id=account.id)).balance == 99_000
        assert await LedgerEntry.filter(account_id=account.id, kind=LedgerEntryKind.ADJUSTMENT).count() == 1


class TestPostEntry:
    async def test_an_insufficient_debit_changes_nothing(self, db: None) -> None:
        account = await funded_account(500)
        assert not await debit(account.id, 501)
        assert (await Account.get(id=account.id)).balance == 500
        assert await LedgerEntry.filter(account_id=account.id).count() == 1

    async def test_verify_finds_a_balance_that_left_the_ledger(self, db: None) -> None:
        account = await funded_account(500)
        assert account.id not in [m.account_id for m in await ledger.verify()]
        await Account.filter(id=account.id).update(balance=400)  # a change around the ledger
        [mismatch] = [m for m in await ledger.verify() if m.account_id == account.id]
        assert (mismatch.balance, mismatch.ledger_sum) == (400, 500)
        await Account.filter(id=account.id).update(balance=500)


class TestIdempotencyKeys:
    async def test_expired_keys_are_purged_and_free_again(self, db: None) -> None:
        from datetime import timedelta

        account = await funded_account(100)
        staff = Actor(user_id=None, account_id=None, role=None, is_staff=True)
        from services.finance import adjust

        first = await adjust(
            actor=staff, account_id=account.id, amount="1.00", memo="a", idempotency_key="k", bus=KeptEvents()
        )
        with shifted(timedelta(hours=24)):
            replay = await adjust(
                actor=staff, account_id=account.id, amount="1.00", memo="a", idempotency_key="k", bus=KeptEvents()
            )
        assert replay.id == first.id
        with shifted(idempotency.KEEP + timedelta(minutes=1)):
            assert await idempotency.purge_expired() >= 1
            again = await adjust(
                actor=staff, account_id=account.id, amount="1.00", memo="a", idempotency_key="k", bus=KeptEvents()
            )
        assert again.id != first.id


class TestLowBalance:
    async def test_crossing_notifies_once_and_rearms(self, smtp_api: tuple[Api, Settings, Inbox]) -> None:
        api, _app_settings, inbox = smtp_api
        a = await tenant(api, accountName="Low & Co", locale="en")
        user = await User.get(email=a["email"])
        account_id = user.account_id
        assert account_id is not None
        finance_email = unique_email("finance")
        member_email = unique_email("member")
        admin = Actor(user_id=user.id, account_id=account_id, role=Role.ADMIN)
        await accounts.user_create(actor=admin, email=finance_email, password=PASSWORD, role=Role.FINANCE)
        await accounts.user_create(actor=admin, email=member_email, password=PASSWORD, role=Role.MEMBER)
        from services.finance import update_settings

        await update_settings(actor=admin, low_balance_threshold="100.00", bus=api.bus)

        async def credit(amount: int) -> None:
            async with in_transaction() as conn:
                await ledger.post_entry(conn, account_id=account_id, kind=LedgerEntryKind.DEPOSIT, amount=amount)

        # 300 -> 150 -> 50 (crossing: mail 1) -> 40 -> 240 (re-armed) -> 40 (crossing: mail 2)
        await credit(30_000)
        for amount in (15_000, 10_000, 1_000):
            assert await debit(account_id, amount)
        await credit(20_000)
        assert await debit(account_id, 20_000)

        async def low_balance_rows() -> list[OutboxMessage]:
            rows = await OutboxMessage.filter(task="send_email", status=OutboxStatus.DONE).order_by("id")
            return [r for r in rows if r.payload["template"] == "low_balance" and r.payload["to"][0] == a["email"]]

        await run_jobs(api.app)
        assert len(await low_balance_rows()) == 2
        received = [
            m for m in inbox.messages if m["Subject"].startswith("Low account balance") and a["email"] in m["To"]
        ]
        # two crossings, two e-mails (the worker may send them in either order)
        assert sorted(m["Subject"] for m in received) == [
            "Low account balance: 40.00 USD",
            "Low account balance: 50.00 USD",
        ]
        for mail in received:
            assert finance_email in mail["To"]
            assert member_email not in mail["To"]
            assert "below your notification threshold of 100.00 USD" in mail.get_body(("plain",)).get_content()

    async def test_a_new_threshold_is_armed_only_if_the_balance_is_above_it(self, db: None) -> None:
        from services.finance import update_settings

        account = await funded_account(4_000)
        email = unique_email()
        user = await User.create(email=email, password_hash="x", account=account, role=Role.ADMIN)
        admin = Actor(user_id=user.id, account_id=account.id, role=Role.ADMIN)
        await update_settings(actor=admin, low_balance_threshold="30.00", bus=KeptEvents())
        assert (await FinanceSettings.get(account_id=account.id)).low_balance_armed is True
        await update_settings(actor=admin, low_balance_threshold="50.00", bus=KeptEvents())
        assert (await FinanceSettings.get(account_id=account.id)).low_balance_armed is False
        assert await debit(account.id, 100)  # already below: no second notice for the same stretch
        assert not [r for r in await OutboxMessage.filter(task="send_email") if email in r.payload["to"]]
