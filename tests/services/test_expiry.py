"""Voucher expiry: the batched sweep (idempotent, racing redemptions safely) and the reminder before it.

The database is shared by the whole run, so a test never sweeps with a clock moved
far ahead: its orders are placed in the past instead (clock.shifted backwards), and
each sweep test first sweeps what earlier tests left due, so its counts are its own.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import datetime, timedelta

import pytest
from tortoise.transactions import in_transaction

from infra import clock
from models import (
    OrderEvent,
    OrderEventKind,
    OutboxMessage,
    OutboxStatus,
    Role,
    User,
    Voucher,
    VoucherOrder,
    VoucherOrderStatus,
    VoucherStatus,
)
from services import expiry, orders
from services.actors import Actor
from services.catalogue import LineRequest
from services.codes import CodeCipher
from services.events import KeptEvents
from services.order_reads import first_vouchers, status_counts
from services.orders import OrderRequest
from services.payments import SandboxGateway
from settings import Settings
from tests.support.api import Api
from tests.support.factories import partner_admin, unique_email
from tests.support.mail import Inbox
from tests.support.running import run_jobs, shifted

YEAR = timedelta(days=365)


async def placed_order(settings: Settings, actor: Actor, quantity: int = 2, *, ago: timedelta) -> VoucherOrder:
    """An order placed `ago` (its vouchers expire one year after that), paid by card in the sandbox."""
    with shifted(-ago):
        return await orders.place_order(
            actor=actor,
            request=OrderRequest(lines=[LineRequest("BASIC_OV", quantity, 1, 1, 0)], card_token="tok_visa"),
            gateway=SandboxGateway(),
            cipher=CodeCipher(settings.code_key),
            public_url=settings.public_url,
            bus=KeptEvents(),
        )


async def stored(order: VoucherOrder) -> list[VoucherStatus]:
    return [v.status for v in await Voucher.filter(order_id=order.id).order_by("id")]


async def expired_events(order: VoucherOrder) -> list[int]:
    events = await OrderEvent.filter(order_id=order.id, kind=OrderEventKind.EXPIRED).order_by("id")
    return [int(e.data["count"]) for e in events]


async def nothing_else_due() -> None:
    """Sweep what earlier tests of the run left due, so this test's counts are its own."""
    await expiry.expire_due(bus=KeptEvents())


class TestExpireDue:
    async def test_expires_in_batches_with_one_event_per_order_and_batch(self, settings: Settings, db: None) -> None:
        # given: 10 due vouchers over three orders, and an order not yet due
        await nothing_else_due()
        actor = await partner_admin()
        due = [await placed_order(settings, actor, n, ago=YEAR + timedelta(days=1)) for n in (4, 3, 3)]
        later = await placed_order(settings, actor, 2, ago=YEAR - timedelta(days=1))
        ids = {o.id: await Voucher.filter(order_id=o.id).order_by("id").values_list("id", flat=True) for o in due}
        low = min(int(i) for vids in ids.values() for i in vids)
        # when
        expired = await expiry.expire_due(batch_size=3, bus=KeptEvents())
        # then: every due voucher expired, one event per order and id range of 3 (in any
        # order: on PostgreSQL two lanes sweep ranges at once)
        assert expired == 10
        for order in due:
            assert await stored(order) == [VoucherStatus.EXPIRED] * order.voucher_count
            windows = Counter((int(i) - low) // 3 for i in ids[order.id])
            assert sorted(await expired_events(order)) == sorted(windows.values())
            assert sum(await expired_events(order)) == order.voucher_count
        assert len(await expired_events(due[0])) >= 2  # 4 consecutive ids span two ranges of 3
        assert await stored(later) == [VoucherStatus.VALID_UNUSED] * 2
        assert await expired_events(later) == []

    async def test_a_second_run_changes_nothing(self, settings: Settings, db: None) -> None:
        await nothing_else_due()
        actor = await partner_admin()
        order = await placed_order(settings, actor, 3, ago=YEAR + timedelta(days=2))
        assert await expiry.expire_due(bus=KeptEvents()) == 3
        events = await OrderEvent.filter(kind=OrderEventKind.EXPIRED).count()

        assert await expiry.expire_due(bus=KeptEvents()) == 0
        assert await expiry.expire_due(batch_size=1, bus=KeptEvents()) == 0
        assert await OrderEvent.filter(kind=OrderEventKind.EXPIRED).count() == events
        assert await expired_events(order) == [3]

    async def test_used_and_cancelled_vouchers_are_never_expired(self, settings: Settings, db: None) -> None:
        await nothing_else_due()
        actor = await partner_admin()
        order = await placed_order(settings, actor, 4, ago=YEAR + timedelta(days=3))
        first, second, *_ = await Voucher.filter(order_id=order.id).order_by("id")
        used_at = clock.now() - timedelta(days=100)
        await Voucher.filter(id=first.id).update(status=VoucherStatus.VALID_USED, used_at=used_at)
        await Voucher.filter(id=second.id).update(status=VoucherStatus.CANCELLED)

        assert await expiry.expire_due(bus=KeptEvents()) == 2
        assert await stored(order) == [
            VoucherStatus.VALID_USED,
            VoucherStatus.CANCELLED,
            VoucherStatus.EXPIRED,
            VoucherStatus.EXPIRED,
        ]
        assert (await Voucher.get(id=first.id)).used_at == used_at
        assert await expired_events(order) == [2]

    async def test_due_means_at_or_past_expiry(self, settings: Settings, db: None) -> None:
        actor = await partner_admin()
        order = await placed_order(settings, actor, 2, ago=timedelta(days=1))
        # in the past, where the first sweep left nothing due
        boundary = clock.now().replace(microsecond=0) - timedelta(hours=1)
        on_time, late = await Voucher.filter(order_id=order.id).order_by("id")
        await nothing_else_due()
        await Voucher.filter(id=on_time.id).update(expires_at=boundary)
        await Voucher.filter(id=late.id).update(expires_at=boundary + timedelta(microseconds=1))

        assert await expiry.expire_due(now=boundary - timedelta(microseconds=1), bus=KeptEvents()) == 0
        assert await expiry.expire_due(now=boundary, bus=KeptEvents()) == 1
        assert await stored(order) == [VoucherStatus.EXPIRED, VoucherStatus.VALID_UNUSED]

    async def test_status_reads_expired_before_the_job_runs(self, settings: Settings, db: None) -> None:
        actor = await partner_admin()
        order = await placed_order(settings, actor, 3, ago=YEAR + timedelta(seconds=5))
        now = clock.now()
        # stored as unused, read as expired
        assert await stored(order) == [VoucherStatus.VALID_UNUSED] * 3
        counts = (await status_counts([order.id], now))[order.id]
        assert counts[VoucherStatus.EXPIRED] == 3
        assert counts[VoucherStatus.VALID_UNUSED] == 0
        rows = (await first_vouchers([order.id], limit=10, after_id=None, status=None, now=now))[order.id]
        assert [r.status for r in rows] == [VoucherStatus.EXPIRED] * 3
        unused = await first_vouchers([order.id], limit=10, after_id=None, status=VoucherStatus.VALID_UNUSED, now=now)
        assert unused[order.id] == []
        # the job changes what is stored, not what is read
        await expiry.expire_due(bus=KeptEvents())
        assert await stored(order) == [VoucherStatus.EXPIRED] * 3
        assert (await status_counts([order.id], now))[order.id] == counts


async def redeem_at(voucher: Voucher, at: datetime) -> int:
    """What a redemption does (LOCK ORDER: the order row, then the voucher, compare-and-set on expiry)."""
    async with in_transaction() as conn:
        await VoucherOrder.filter(id=voucher.order_id).using_db(conn).select_for_update().get()
        await asyncio.sleep(random.uniform(0, 0.005))  # what a real request does under the lock
        return int(
            await Voucher.filter(id=voucher.id, status=VoucherStatus.VALID_UNUSED, expires_at__gt=at)
            .using_db(conn)
            .update(status=VoucherStatus.VALID_USED, used_at=at)
        )


@pytest.mark.postgres
class TestExpiryRacesRedemption:
    async def test_one_end_state_at_the_boundary_and_a_rerun_changes_nothing(
        self, settings: Settings, db: None
    ) -> None:
        # given: 40 vouchers over 20 orders, all expiring at one instant; a redemption a
        # millisecond before it (still valid in its eyes) and two sweeps at it (due in theirs)
        await nothing_else_due()
        actor = await partner_admin()
        placed = [await placed_order(settings, actor, 2, ago=timedelta(days=1)) for _ in range(20)]
        boundary = clock.now() + timedelta(seconds=1)
        await Voucher.filter(order_id__in=[o.id for o in placed]).update(expires_at=boundary)
        vouchers = await Voucher.filter(order_id__in=[o.id for o in placed]).order_by("id")
        redeemed_at = boundary - timedelta(milliseconds=1)

        async def late_redeem(voucher: Voucher) -> int:
            await asyncio.sleep(random.uniform(0, 0.03))
            return await redeem_at(voucher, redeemed_at)

        # when: both sweeps and every redemption at once
        sweep_a, sweep_b, *redeemed = await asyncio.gather(
            expiry.expire_due(now=boundary, batch_size=7, bus=KeptEvents()),
            expiry.expire_due(now=boundary, batch_size=5, bus=KeptEvents()),
            *(late_redeem(v) for v in vouchers),
        )
        # then: each voucher ended exactly one way, and the history agrees
        after = {v.id: v for v in await Voucher.filter(id__in=[v.id for v in vouchers])}
        for voucher, won in zip(vouchers, redeemed, strict=True):
            final = after[voucher.id]
            if won:
                assert final.status == VoucherStatus.VALID_USED
                assert final.used_at == redeemed_at
            else:
                assert final.status == VoucherStatus.EXPIRED
                assert final.used_at is None
        expired = sum(1 for v in after.values() if v.status == VoucherStatus.EXPIRED)
        assert sweep_a + sweep_b == expired
        assert expired + sum(redeemed) == len(vouchers)
        events = await OrderEvent.filter(order_id__in=[o.id for o in placed], kind=OrderEventKind.EXPIRED)
        per_order = Counter[int]()
        for event in events:
            per_order[event.order_id] += int(event.data["count"])
        assert per_order == Counter(v.order_id for v in after.values() if v.status == VoucherStatus.EXPIRED)
        # and a rerun changes nothing
        assert await expiry.expire_due(now=boundary, bus=KeptEvents()) == 0
        assert await OrderEvent.filter(order_id__in=[o.id for o in placed], kind=OrderEventKind.EXPIRED).count() == (
            len(events)
        )
        assert {v.id: (v.status, v.used_at) for v in await Voucher.filter(id__in=list(after))} == {
            v.id: (v.status, v.used_at) for v in after.values()
        }


# --- reminders ------------------------------------------------------------------------------------


async def reminders(order: VoucherOrder) -> list[OutboxMessage]:
    rows = await OutboxMessage.filter(task="send_email").order_by("id")
    return [
        r
        for r in rows
        if r.payload["template"] == expiry.EXPIRY_REMINDER and r.payload["context"]["number"] == order.number
    ]


async def reminded(order: VoucherOrder) -> bool:
    row = await VoucherOrder.get(id=order.id)
    return row.expiry_reminder_sent_at is not None


class TestExpiryReminders:
    async def test_once_per_order_to_admins_and_finance(self, settings: Settings, db: None) -> None:
        # given: an order whose vouchers expire in 15 days; a FINANCE and a MEMBER user
        actor = await partner_admin(locale="fr", name="Café Lumière")
        finance = await User.create(
            email=unique_email("finance"), password_hash="x", account_id=actor.account_id, role=Role.FINANCE
        )
        member = await User.create(
            email=unique_email("member"), password_hash="x", account_id=actor.account_id, role=Role.MEMBER
        )
        order = await placed_order(settings, actor, 3, ago=YEAR - timedelta(days=15))
        first = await Voucher.filter(order_id=order.id).order_by("id").first()
        assert first is not None
        await Voucher.filter(id=first.id).update(status=VoucherStatus.VALID_USED, used_at=clock.now())
        # when: run twice
        assert await expiry.send_expiry_reminders(public_url=settings.public_url) >= 1
        assert await expiry.send_expiry_reminders(public_url=settings.public_url) == 0
        # then: one e-mail, in the account's locale, to its admin and finance users only
        [row] = await reminders(order)
        admin = await User.get(id=actor.user_id)
        assert row.payload["to"] == [admin.email, finance.email]
        assert member.email not in row.payload["to"]
        assert row.payload["locale"] == "fr"
        context = row.payload["context"]
        assert context["vouchers"] == 2
        assert context["account_name"] == "Café Lumière"
        assert context["link"] == f"{settings.public_url}/orders/{order.number}"
        assert context["expires_on"] == f"{first.expires_at:%d/%m/%Y}"
        assert await reminded(order)

    async def test_only_active_orders_with_unused_vouchers_expiring_within_30_days(
        self, settings: Settings, db: None
    ) -> None:
        actor = await partner_admin()
        in_40_days = await placed_order(settings, actor, ago=YEAR - timedelta(days=40))
        in_10_days = await placed_order(settings, actor, ago=YEAR - timedelta(days=10))
        all_used = await placed_order(settings, actor, ago=YEAR - timedelta(days=10))
        await Voucher.filter(order_id=all_used.id).update(status=VoucherStatus.VALID_USED, used_at=clock.now())
        cancelled = await placed_order(settings, actor, ago=YEAR - timedelta(days=10))
        await VoucherOrder.filter(id=cancelled.id).update(status=VoucherOrderStatus.CANCELLED)
        await Voucher.filter(order_id=cancelled.id).update(status=VoucherStatus.CANCELLED)
        already_expired = await placed_order(settings, actor, ago=YEAR + timedelta(days=1))

        await expiry.send_expiry_reminders(public_url=settings.public_url)
        assert [await reminded(o) for o in (in_40_days, in_10_days, all_used, cancelled, already_expired)] == [
            False,
            True,
            False,
            False,
            False,
        ]
        # eleven days on, the first order is 29 days from expiry: now it is reminded, once
        with shifted(timedelta(days=11)):
            await expiry.send_expiry_reminders(public_url=settings.public_url)
            await expiry.send_expiry_reminders(public_url=settings.public_url)
        assert await reminded(in_40_days)
        for order, count in ((in_40_days, 1), (in_10_days, 1), (all_used, 0), (cancelled, 0), (already_expired, 0)):
            assert len(await reminders(order)) == count

    async def test_the_window_is_30_days_inclusive(self, settings: Settings, db: None) -> None:
        actor = await partner_admin()
        order = await placed_order(settings, actor, 1, ago=timedelta(days=1))
        now = clock.now().replace(microsecond=0)
        await Voucher.filter(order_id=order.id).update(expires_at=now + timedelta(days=30, microseconds=1))
        await expiry.send_expiry_reminders(public_url=settings.public_url, now=now)
        assert not await reminded(order)
        await expiry.send_expiry_reminders(public_url=settings.public_url, now=now + timedelta(microseconds=1))
        assert await reminded(order)

    @pytest.mark.postgres
    async def test_concurrent_runs_remind_each_order_once(self, settings: Settings, db: None) -> None:
        actor = await partner_admin()
        placed = [await placed_order(settings, actor, 1, ago=YEAR - timedelta(days=5)) for _ in range(8)]
        runs = await asyncio.gather(*(expiry.send_expiry_reminders(public_url=settings.public_url) for _ in range(4)))
        assert sum(runs) >= len(placed)
        for order in placed:
            assert len(await reminders(order)) == 1

    async def test_the_email_reaches_smtp_in_the_account_locale(self, smtp_api: tuple[Api, Settings, Inbox]) -> None:
        api, app_settings, inbox = smtp_api
        actor = await partner_admin(locale="de", name="Bäckerei Größe")
        order = await placed_order(app_settings, actor, 2, ago=YEAR - timedelta(days=20))
        admin = await User.get(id=actor.user_id)

        await expiry.send_expiry_reminders(public_url=app_settings.public_url)
        await run_jobs(api.app)  # the reminder, and the order's PDF
        [row] = [r for r in await reminders(order) if r.status == OutboxStatus.DONE]
        [mail] = [m for m in inbox.messages if m["X-Vouchsafe-Outbox-Id"] == str(row.id)]
        voucher = await Voucher.filter(order_id=order.id).first()
        assert voucher is not None
        expires_on = f"{voucher.expires_at:%d.%m.%Y}"
        assert mail["Subject"] == f"Gutscheinbestellung {order.number}: 2 unbenutzte Codes laufen am {expires_on} ab"
        assert mail["To"] == admin.email
        body = mail.get_body(("plain",))
        assert body is not None
        text = body.get_content()
        assert "„Bäckerei Größe“" in text
        assert f"/orders/{order.number}" in text
