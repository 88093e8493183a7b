"""Delivery guarantees with real `vouchsafe worker` processes and real Redis:
Redis outages, relay crashes, rows run twice, retries to the end.

Workers are the installed console script, started as subprocesses on the run's
database and queue with the test's keys, and always stopped in `finally`. With no
SMTP URL a worker writes each e-mail to <its data dir>/mail/<outbox id>.eml; tests
that must see a second send (a rerun overwrites that file) give the worker a real
SMTP server instead and count what arrives.
"""

from __future__ import annotations

import asyncio
import email.message
import io
import re
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from pypdf import PdfReader

from infra.redis import ArqQueue, open_redis
from models import OrderEvent, OrderEventKind, OutboxMessage, OutboxStatus, PdfStatus, VoucherOrder
from services import outbox
from services.mail import SEND_EMAIL, SmtpMailer, email_payload, send_email_handler
from services.orders import RENDER_PDF
from settings import Settings
from tests.support.api import Api, loopback_client
from tests.support.factories import line, order, partner
from tests.support.mail import Inbox
from tests.support.orders import stored_pdf
from tests.support.processes import Workers, command, worker_env
from tests.support.redis import OwnRedis
from tests.support.running import wait_for
from tests.support.stores import REDIS_URL

pytestmark = pytest.mark.postgres

REMINDER_CONTEXT = {
    "account_name": "Delivery Ltd",
    "number": "VO-TEST",
    "customer_name": "",
    "vouchers": 1,
    "expires_on": "2030-01-01",
    "link": "http://127.0.0.1:8000/orders/VO-TEST",
}


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    running = Workers(settings, tmp_path)
    try:
        yield running
    finally:
        running.stop()


async def settled(workers: Workers, check: Any, *, within: float, what: str) -> Any:
    """Wait (bounded) for `check`, failing early with the logs if a worker died."""

    async def probe() -> Any:
        workers.check_alive()
        return await check()

    try:
        # Polled: the workers are `vouchsafe worker` processes.
        return await wait_for(probe, within=within, interval=0.1)
    except AssertionError as exc:
        raise AssertionError(f"{what}: {exc}\n{workers.logs()}") from None


def mails_by_outbox_id(inbox: Inbox) -> Counter[str]:
    return Counter(str(m["X-Vouchsafe-Outbox-Id"]) for m in inbox.messages)


async def email_row(template: str = "expiry_reminder", **context: Any) -> OutboxMessage:
    payload = email_payload(template, to=["ops@example.com"], locale="en", context={**REMINDER_CONTEXT, **context})
    return await OutboxMessage.create(task=SEND_EMAIL, payload=payload)


# --- Redis down while orders commit ---


@pytest.fixture
async def own_redis_api(settings: Settings, own_redis: OwnRedis) -> AsyncIterator[tuple[Api, Settings]]:
    from server import create_app

    app_settings = replace(settings, redis_url=own_redis.url)
    app = create_app(app_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=loopback_client())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield Api(http), app_settings


class TestRedisOutage:
    async def test_orders_commit_while_redis_is_down_and_their_emails_go_out_once(
        self, own_redis_api: tuple[Api, Settings], own_redis: OwnRedis, workers: Workers
    ) -> None:
        api, settings = own_redis_api
        buyer = await partner(api, accountName="Outage Reseller")
        # Outbox rows of this test come after this id: each read below is of those, not the whole table.
        last = await OutboxMessage.all().order_by("-id").first()
        after = last.id if last else 0
        # when: Redis stops and 20 orders are placed
        own_redis.stop()
        try:
            placed = [
                await order(api, buyer["token"], line(quantity=1), paymentMethod="ACCOUNT_BALANCE") for _ in range(20)
            ]
            for result in placed:
                assert result["errors"] == [], result
            numbers = {result["order"]["number"] for result in placed}

            async def confirmations() -> list[OutboxMessage]:
                rows = await OutboxMessage.filter(task=SEND_EMAIL, id__gt=after)
                return [
                    r
                    for r in rows
                    if r.payload["template"] == "order_placed" and r.payload["context"]["number"] in numbers
                ]

            # then: all 20 committed, their e-mails wait in the outbox
            assert await VoucherOrder.filter(account_id=buyer["account_id"]).count() == 20
            assert len(await confirmations()) == 20
            await asyncio.sleep(1.2)  # sweeps fail meanwhile
            assert {r.status for r in await confirmations()} == {OutboxStatus.PENDING}
        finally:
            own_redis.start()
        # when: Redis is back, with a worker on it
        data_dir = workers.start(redis_url=own_redis.url)

        async def all_done() -> list[OutboxMessage] | None:
            rows = await confirmations()
            return rows if all(r.status == OutboxStatus.DONE for r in rows) else None

        done = await settled(workers, all_done, within=60, what="20 order confirmations DONE")
        # then: each sent exactly once
        ids = {str(r.id) for r in done}
        files = [p for p in (data_dir / "mail").glob("*.eml") if p.stem in ids]
        assert len(files) == 20
        assert {r.attempts for r in done} == {1}  # the handler ran once per row
        for path in files:
            mail = email.message_from_bytes(path.read_bytes())
            assert mail["To"] == buyer["email"]
            assert mail["Subject"].startswith("Voucher order VO-")
        # and exactly 20 PDFs: each order's rendered once, one page for its one voucher
        orders = await VoucherOrder.filter(account_id=buyer["account_id"])
        order_ids = {o.id for o in orders}

        async def all_rendered() -> bool:
            return await VoucherOrder.filter(id__in=order_ids, pdf_status=PdfStatus.READY).count() == 20

        await settled(workers, all_rendered, within=90, what="20 PDFs READY")
        ready = await OrderEvent.filter(order_id__in=order_ids, kind=OrderEventKind.PDF_READY)
        assert sorted(e.order_id for e in ready) == sorted(order_ids)
        rows = await OutboxMessage.filter(task=RENDER_PDF, id__gt=after)
        renders = [r for r in rows if r.payload["order_id"] in order_ids]
        assert len(renders) == 20
        assert {(r.status, r.attempts) for r in renders} == {(OutboxStatus.DONE, 1)}
        for o in orders:
            assert len(PdfReader(io.BytesIO(await stored_pdf(o, settings))).pages) == 1


# --- the relay crashes between enqueue and mark ---


@pytest.fixture
def smtp_url(smtp: tuple[Inbox, int]) -> str:
    return f"smtp://127.0.0.1:{smtp[1]}"


class TestRelayCrash:
    async def test_enqueued_again_before_marked_sent_runs_once(
        self, settings: Settings, db: None, workers: Workers, smtp: tuple[Inbox, int], smtp_url: str
    ) -> None:
        assert REDIS_URL
        inbox, _ = smtp
        row = await email_row()
        redis = await open_redis(REDIS_URL, queue_name=settings.queue_name)
        try:
            queue = ArqQueue(redis)
            # the relay hands the row over, then "crashes" before marking it ENQUEUED
            await queue.enqueue(outbox.RUN_OUTBOX, row.id, job_id=outbox.job_id(row.id))
            assert (await OutboxMessage.get(id=row.id)).status == OutboxStatus.PENDING
            # restarted, it hands the same row over again under the same job id
            assert await outbox.relay_pending(queue) >= 1
            assert (await OutboxMessage.get(id=row.id)).status == OutboxStatus.ENQUEUED
            job_key = f"{settings.queue_name}:{outbox.job_id(row.id)}"
            assert await redis.zscore(settings.queue_name, job_key) is not None
        finally:
            await redis.aclose()
        workers.start(redis_url=REDIS_URL, smtp_url=smtp_url)

        async def done() -> OutboxMessage | None:
            current = await OutboxMessage.get(id=row.id)
            return current if current.status == OutboxStatus.DONE else None

        sent = await settled(workers, done, within=30, what="the row DONE")
        await settled(workers, _arrived(inbox, sent.id), within=10, what="the e-mail at the SMTP server")
        await asyncio.sleep(1.5)  # room for a duplicate to show up
        assert mails_by_outbox_id(inbox)[str(row.id)] == 1
        assert sent.attempts == 1


def _arrived(inbox: Inbox, message_id: int) -> Any:
    async def check() -> bool:
        return mails_by_outbox_id(inbox)[str(message_id)] >= 1

    return check


# --- one row run twice at once ---


class TestTwiceConcurrently:
    async def test_two_runs_of_one_row_in_one_process_send_once(
        self, settings: Settings, db: None, smtp: tuple[Inbox, int], smtp_url: str
    ) -> None:
        inbox, _ = smtp
        handlers = {SEND_EMAIL: send_email_handler(SmtpMailer(smtp_url), settings.mail_from)}
        row = await email_row()
        outcomes = await asyncio.gather(outbox.run(row.id, handlers), outbox.run(row.id, handlers))
        # The other run finds the row held (BUSY) or, when the first ended before it looked, done (SKIPPED).
        assert outcomes.count(outbox.Outcome.DONE) == 1
        assert set(outcomes) - {outbox.Outcome.DONE} <= {outbox.Outcome.BUSY, outbox.Outcome.SKIPPED}
        assert await outbox.run(row.id, handlers) is outbox.Outcome.SKIPPED
        # DONE: the server answered 250, which its handler gives after storing the message.
        assert mails_by_outbox_id(inbox)[str(row.id)] == 1

    async def test_two_worker_processes_given_each_row_twice_send_once(
        self, settings: Settings, db: None, workers: Workers, smtp: tuple[Inbox, int], smtp_url: str
    ) -> None:
        assert REDIS_URL
        inbox, _ = smtp
        workers.start(redis_url=REDIS_URL, smtp_url=smtp_url)
        workers.start(redis_url=REDIS_URL, smtp_url=smtp_url)
        await asyncio.sleep(3)  # both polling the queue
        workers.check_alive()
        rows = [await email_row(number=f"VO-TWICE-{n}") for n in range(10)]
        # two deliveries of each row at once, under two job ids, so that arq cannot dedupe them
        redis = await open_redis(REDIS_URL, queue_name=settings.queue_name)
        job_ids = [f"{settings.queue_name}:f04-{row.id}-{copy}" for row in rows for copy in ("a", "b")]
        try:
            await asyncio.gather(
                *(
                    redis.enqueue_job(outbox.RUN_OUTBOX, row.id, _job_id=f"{settings.queue_name}:f04-{row.id}-{copy}")
                    for row in rows
                    for copy in ("a", "b")
                )
            )

            async def all_done() -> bool:
                statuses = await OutboxMessage.filter(id__in=[r.id for r in rows]).values_list("status", flat=True)
                return set(statuses) == {OutboxStatus.DONE}

            await settled(workers, all_done, within=30, what="10 rows DONE")
            await asyncio.sleep(1.5)  # room for a duplicate to show up
        finally:
            # a delivery that found the row busy comes back later (Retry): it would only be SKIPPED
            await redis.zrem(settings.queue_name, *job_ids)
            await redis.delete(*(f"arq:job:{job_id}" for job_id in job_ids))
            await redis.aclose()
        sent = mails_by_outbox_id(inbox)
        assert [sent[str(r.id)] for r in rows] == [1] * 10
        assert set(await OutboxMessage.filter(id__in=[r.id for r in rows]).values_list("attempts", flat=True)) == {1}


# --- failing through every try ---


def cli(settings: Settings, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert REDIS_URL
    return subprocess.run(
        [*command(), *args],
        env=worker_env(settings, data_dir, redis_url=REDIS_URL),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def failed_metric(api: Api) -> int:
    response = await api.http.get("/metrics")
    assert response.status_code == 200, response.text
    match = re.search(r'^vouchsafe_outbox_messages\{status="FAILED"\} ([\d.]+)$', response.text, re.MULTILINE)
    assert match, response.text
    return int(float(match.group(1)))


async def failed_metric_agrees(api: Api) -> list[int] | None:
    """[the metric's FAILED count], when it equals the table's (other rows may change meanwhile)."""
    before = await OutboxMessage.filter(status=OutboxStatus.FAILED).count()
    metric = await failed_metric(api)
    after = await OutboxMessage.filter(status=OutboxStatus.FAILED).count()
    return [metric] if before == metric == after else None


async def current_if(message_id: int, status: OutboxStatus) -> OutboxMessage | None:
    current = await OutboxMessage.get(id=message_id)
    return current if current.status == status else None


class TestFailsThroughAllTries:
    async def test_failed_visible_retried_then_completes(
        self, settings: Settings, api: Api, workers: Workers, tmp_path: Path
    ) -> None:
        assert REDIS_URL
        # given: an e-mail whose template does not exist, and a worker
        row = await email_row(template="no_such_template")
        data_dir = workers.start(redis_url=REDIS_URL)
        # then: it fails through all its tries (2 + 4 + 8 + 16 s apart: outbox.retry_delay), and stays FAILED
        dead = await settled(workers, lambda: current_if(row.id, OutboxStatus.FAILED), within=90, what="the row FAILED")
        assert dead.attempts == outbox.MAX_ATTEMPTS
        assert "TemplateNotFound" in (dead.last_error or "")
        assert "no_such_template" in (dead.last_error or "")
        # visible to the operator: the command line and the metric
        listed = cli(settings, tmp_path / "cli", "outbox", "failed")
        assert listed.returncode == 0, listed.stderr
        [mine] = [ln for ln in listed.stdout.splitlines() if ln.split("\t")[0] == str(row.id)]
        assert "send_email" in mine
        assert f"attempts={outbox.MAX_ATTEMPTS}" in mine
        assert "no_such_template" in mine
        # Polled: the worker processes still move rows while the metric is read.
        [failed] = await wait_for(lambda: failed_metric_agrees(api), within=10)
        assert failed >= 1

        # when: the payload is fixed and an operator retries it
        fixed = email_payload("expiry_reminder", to=["ops@example.com"], locale="en", context=REMINDER_CONTEXT)
        await OutboxMessage.filter(id=row.id).update(payload=fixed)
        retried = cli(settings, tmp_path / "cli", "outbox", "retry", str(row.id))
        assert retried.returncode == 0, retried.stderr
        assert f"outbox message {row.id} queued again" in retried.stdout

        # then: it completes, once, and is no longer counted as failed
        completed = await settled(
            workers, lambda: current_if(row.id, OutboxStatus.DONE), within=30, what="the retried row DONE"
        )
        assert completed.attempts == 1
        assert completed.last_error is None
        assert (data_dir / "mail" / f"{row.id}.eml").exists()
        # Polled: as above, the worker processes move rows meanwhile.
        await wait_for(lambda: failed_metric_agrees(api), within=10)
