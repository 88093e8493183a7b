"""The outbox path end to end: written in the change's transaction, relayed, sent once."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from arq import Retry

from infra.redis import fake_server
from models import OutboxMessage, OutboxStatus, User
from services import outbox
from settings import Settings
from tests.support.api import Api, loopback_client
from tests.support.factories import PASSWORD, SIGN_UP, request_outbox_rows, sign_up, unique_email
from tests.support.mail import Inbox
from tests.support.redis import OwnRedis
from tests.support.running import run_jobs, running_worker, shifted, wait_for
from workers.tasks import run_outbox


async def _welcome_message(email_address: str) -> OutboxMessage | None:
    async for message in OutboxMessage.filter(task="send_email").order_by("-id").limit(200):
        if message.payload["to"] == [email_address]:
            return message
    return None


async def _done(email_address: str) -> OutboxMessage | None:
    message = await _welcome_message(email_address)
    return message if message and message.status == OutboxStatus.DONE else None


def _eml(settings: Settings, message: OutboxMessage) -> email.message.EmailMessage:
    return email.message_from_bytes((settings.mail_dir / f"{message.id}.eml").read_bytes(), policy=email.policy.default)


class TestWelcomeEmail:
    async def test_sign_up_sends_a_welcome_in_the_account_locale(self, settings: Settings, burst_api: Api) -> None:
        account = await sign_up(burst_api, locale="de", accountName="Bäckerei Größe")
        await run_jobs(burst_api.app)
        message = await _done(account["email"])
        assert message is not None
        mail = _eml(settings, message)
        assert mail["Subject"] == "Willkommen bei vouchsafe, Bäckerei Größe"
        assert mail["To"] == account["email"]
        assert mail["Message-ID"] == f"<outbox-{message.id}@vouchsafe>"
        text = mail.get_body(("plain",)).get_content()
        html = mail.get_body(("html",)).get_content()
        assert "Gutscheinfunktion" in text
        assert "Bäckerei Größe" in text
        assert "<p>" in html

    async def test_html_escapes_user_text(self, settings: Settings, burst_api: Api) -> None:
        account = await sign_up(burst_api, accountName="<b>Evil</b> & Co")
        await run_jobs(burst_api.app)
        message = await _done(account["email"])
        assert message is not None
        html = _eml(settings, message).get_body(("html",)).get_content()
        assert "&lt;b&gt;Evil&lt;/b&gt; &amp; Co" in html
        assert "<b>Evil" not in html

    async def test_a_refused_sign_up_writes_no_outbox_row(self, api: Api) -> None:
        account = await sign_up(api)
        before = await request_outbox_rows()
        result = await api(SIGN_UP, {"input": {"email": account["email"], "password": PASSWORD, "accountName": "x"}})
        assert result["data"]["signUp"]["errors"][0]["code"] == "EMAIL_TAKEN"
        assert await request_outbox_rows() == before


class TestRun:
    async def test_runs_once_however_often_delivered(self, settings: Settings, db: None) -> None:
        calls: list[int] = []

        async def handler(payload: dict[str, Any], message_id: int) -> None:
            await asyncio.sleep(0.05)
            calls.append(message_id)

        message = await OutboxMessage.create(task="count", payload={})
        outcomes = await asyncio.gather(*(outbox.run(message.id, {"count": handler}) for _ in range(5)))
        again = await outbox.run(message.id, {"count": handler})
        assert calls == [message.id]
        assert sorted(outcomes).count(outbox.Outcome.DONE) == 1
        assert again is outbox.Outcome.SKIPPED

    async def test_failing_task_retries_then_stays_failed_and_visible(self, db: None) -> None:
        async def broken(payload: dict[str, Any], message_id: int) -> None:
            raise RuntimeError("SMTP said no")

        message = await OutboxMessage.create(task="broken", payload={})
        outcomes = [await outbox.run(message.id, {"broken": broken}) for _ in range(outbox.MAX_ATTEMPTS)]
        assert outcomes == [outbox.Outcome.RETRY] * (outbox.MAX_ATTEMPTS - 1) + [outbox.Outcome.FAILED]
        row = await OutboxMessage.get(id=message.id)
        assert row.status == OutboxStatus.FAILED
        assert "SMTP said no" in (row.last_error or "")
        assert message.id in [m.id for m in await outbox.failed_messages()]
        # an operator retries it; it is pending again and runs
        await outbox.retry_failed(message.id)

        async def fixed(payload: dict[str, Any], message_id: int) -> None:
            return None

        assert await outbox.run(message.id, {"broken": fixed}) is outbox.Outcome.DONE


class TestLease:
    """A claim holds its row for a short lease, renewed by a heartbeat while the handler runs."""

    async def test_a_killed_workers_row_is_taken_again_after_the_lease_not_the_job_timeout(
        self, settings: Settings, db: None
    ) -> None:
        short = replace(settings, job_lease_seconds=1.0, job_timeout_seconds=180)
        started = asyncio.Event()

        async def stuck(payload: dict[str, Any], message_id: int) -> None:
            started.set()
            await asyncio.Event().wait()

        async def quick(payload: dict[str, Any], message_id: int) -> None:
            return None

        message = await OutboxMessage.create(task="t", payload={})
        first = asyncio.create_task(run_outbox(_job_ctx(short, {"t": stuck}), message.id))
        await started.wait()
        first.cancel()  # its worker dies: the heartbeat stops, the lease is not given back
        with contextlib.suppress(asyncio.CancelledError):
            await first
        died = time.monotonic()
        with pytest.raises(Retry) as busy:  # still held for the rest of the lease
            await run_outbox(_job_ctx(short, {"t": quick}), message.id)
        assert busy.value.defer_score == 1000  # tried again after one lease (rounded up to a second)
        outcome = await wait_for(lambda: _done_or_none(short, message.id, quick), within=5, interval=0.1)
        assert outcome == "DONE"
        assert time.monotonic() - died < 5  # the lease (1 s), not the job timeout (180 s)
        row = await OutboxMessage.get(id=message.id)
        assert (row.status, row.attempts) == (OutboxStatus.DONE, 2)

    async def test_a_running_job_keeps_its_row_for_many_leases(self, db: None) -> None:
        lease = timedelta(seconds=1)  # renewed every 1/3 s; long enough for a loaded test machine
        ran: list[str] = []

        async def slow(payload: dict[str, Any], message_id: int) -> None:
            await asyncio.sleep(3.5)  # three and a half leases
            ran.append("slow")

        async def other(payload: dict[str, Any], message_id: int) -> None:
            ran.append("other")

        message = await OutboxMessage.create(task="t", payload={})
        running = asyncio.create_task(outbox.run(message.id, {"t": slow}, lease=lease))
        attempts: list[outbox.Outcome] = []
        while not running.done():
            await asyncio.sleep(0.1)
            attempts.append(await outbox.run(message.id, {"t": other}, lease=lease))
        assert await running is outbox.Outcome.DONE
        assert len(attempts) >= 20
        assert set(attempts[:-1]) == {outbox.Outcome.BUSY}  # the last one may come after the finish
        assert ran == ["slow"]

    async def test_of_two_claimers_only_one_completes(self, db: None) -> None:
        release = asyncio.Event()
        ran: list[str] = []

        async def first(payload: dict[str, Any], message_id: int) -> None:
            await release.wait()
            ran.append("first")

        async def second(payload: dict[str, Any], message_id: int) -> None:
            ran.append("second")

        message = await OutboxMessage.create(task="t", payload={})
        holder = asyncio.create_task(outbox.run(message.id, {"t": first}, lease=timedelta(seconds=10)))
        await wait_for(lambda: _claimed(message.id))
        with shifted(timedelta(seconds=11)):  # as if the holder's heartbeat had failed for a whole lease
            taken = await outbox.run(message.id, {"t": second}, lease=timedelta(seconds=10))
        release.set()
        assert (taken, await holder) == (outbox.Outcome.DONE, outbox.Outcome.BUSY)
        assert ran == ["second", "first"]  # both ran; only the second's completion is recorded
        row = await OutboxMessage.get(id=message.id)
        assert (row.status, row.attempts) == (OutboxStatus.DONE, 2)

    async def test_a_holder_that_lost_its_row_is_stopped_by_its_heartbeat(self, db: None) -> None:
        cancelled = asyncio.Event()

        async def forever(payload: dict[str, Any], message_id: int) -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        async def second(payload: dict[str, Any], message_id: int) -> None:
            return None

        message = await OutboxMessage.create(task="t", payload={})
        holder = asyncio.create_task(outbox.run(message.id, {"t": forever}, lease=timedelta(seconds=1.5)))
        await wait_for(lambda: _claimed(message.id))
        taken = outbox.Outcome.BUSY
        for hours in range(1, 6):  # the holder's heartbeat may renew in the shifted time once: go further
            with shifted(timedelta(hours=hours)):
                taken = await outbox.run(message.id, {"t": second}, lease=timedelta(seconds=1.5))
            if taken is outbox.Outcome.DONE:
                break
        assert taken is outbox.Outcome.DONE
        assert await asyncio.wait_for(holder, timeout=5) is outbox.Outcome.BUSY
        assert cancelled.is_set()
        assert (await OutboxMessage.get(id=message.id)).status == OutboxStatus.DONE


def _job_ctx(settings: Settings, handlers: dict[str, outbox.Handler]) -> dict[str, Any]:
    """What arq hands the worker's run_outbox task."""
    return {"settings": settings, "handlers": handlers, "job_try": 1}


async def _done_or_none(settings: Settings, message_id: int, handler: outbox.Handler) -> str | None:
    try:
        return await run_outbox(_job_ctx(settings, {"t": handler}), message_id)
    except Retry:
        return None


async def _claimed(message_id: int) -> bool:
    return (await OutboxMessage.get(id=message_id)).locked_until is not None


# --- Redis outage in the small, with the in-process worker -------------------------------------------------


@contextlib.contextmanager
def redis_down(settings: Settings, own: OwnRedis | None) -> Iterator[None]:
    if own is None:
        fake_server().connected = False
    else:
        own.stop()
    try:
        yield
    finally:
        if own is None:
            fake_server().connected = True
        else:
            own.start()


@pytest.fixture
def own_redis_or_stand_in(settings: Settings, tmp_path: Path) -> Iterator[OwnRedis | None]:
    if settings.embedded_redis:
        yield None
        return
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    own = OwnRedis(tmp_path)
    own.start()
    try:
        yield own
    finally:
        own.stop()


@pytest.fixture
async def outage_api(settings: Settings, own_redis_or_stand_in: OwnRedis | None) -> AsyncIterator[tuple[Api, Settings]]:
    import httpx

    from server import create_app

    own_redis = own_redis_or_stand_in
    app_settings = settings if own_redis is None else replace(settings, redis_url=own_redis.url)
    app = create_app(app_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=loopback_client())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield Api(http), app_settings


class TestRedisOutage:
    async def test_sign_up_commits_and_its_email_goes_out_once_redis_is_back(
        self, outage_api: tuple[Api, Settings], own_redis_or_stand_in: OwnRedis | None
    ) -> None:
        api, app_settings = outage_api
        address = unique_email("outage")
        with redis_down(app_settings, own_redis_or_stand_in):
            result = await api(SIGN_UP, {"input": {"email": address, "password": PASSWORD, "accountName": "Down"}})
            assert result["data"]["signUp"]["errors"] == []
            assert await User.filter(email=address).exists()
            await asyncio.sleep(1.2)  # two sweeps fail while Redis is away
            message = await _welcome_message(address)
            assert message is not None
            assert message.status == OutboxStatus.PENDING
        async with running_worker(app_settings):
            # The app's own relay and worker carry on once Redis is back (a worker process on Redis): polled.
            done = await wait_for(lambda: _done(address), within=20)
        assert (app_settings.mail_dir / f"{done.id}.eml").exists()
        assert len(list(app_settings.mail_dir.glob(f"{done.id}.eml"))) == 1


# --- SMTP ---------------------------------------------------------------------------------------------


class TestSmtp:
    async def test_welcome_reaches_a_real_smtp_server(self, smtp_api: tuple[Api, Settings, Inbox]) -> None:
        api, _app_settings, inbox = smtp_api
        account = await sign_up(api, locale="fr", accountName="Café Lumière")
        await run_jobs(api.app)
        assert await _done(account["email"])
        # The job is done once the server accepted the message, which its handler stores first.
        [mail] = [m for m in inbox.messages if m["To"] == account["email"]]
        assert mail["Subject"] == "Bienvenue sur vouchsafe, Café Lumière"
