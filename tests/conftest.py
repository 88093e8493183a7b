"""Test fixtures: one database per run (SQLite file, or a fresh PostgreSQL database).

With DATABASE_URL and REDIS_URL set the suite runs on PostgreSQL + Redis, in a
database it creates and drops, on a queue name of its own; without them it runs
on SQLite and the in-process Redis stand-in.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import shutil
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from infra import database
from models import ORM_APPS
from settings import Settings, load_settings
from tests.support.api import Api, loopback_client, without_worker
from tests.support.mail import Inbox
from tests.support.redis import OwnRedis
from tests.support.running import free_port
from tests.support.stores import BASE_DATABASE_URL, ON_POSTGRES, REDIS_URL, admin_execute, with_database


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ON_POSTGRES:
        return
    skip = pytest.mark.skip(reason="race and fault tests run on PostgreSQL + Redis (set DATABASE_URL, REDIS_URL)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Figures a test recorded with record_property("figures", [lines]) (F12's), shown without -s."""
    for reports in list(terminalreporter.stats.values()):
        for report in reports:
            figures = dict(getattr(report, "user_properties", ())).get("figures")
            if getattr(report, "when", None) == "call" and figures:
                terminalreporter.write_sep("-", f"figures: {report.nodeid}")
                for line in figures:
                    terminalreporter.write_line(f"  {line}")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of this run's own, migrated; dropped at the end."""
    if not ON_POSTGRES:
        url = f"sqlite://{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
        asyncio.run(database.migrate(url, apps=ORM_APPS))
        yield url
        return
    assert BASE_DATABASE_URL
    name = f"vouchsafe_test_{secrets.token_hex(4)}"
    asyncio.run(admin_execute(f'CREATE DATABASE "{name}"'))
    url = with_database(BASE_DATABASE_URL, name)
    try:
        asyncio.run(database.migrate(url, apps=ORM_APPS))
        yield url
    finally:
        asyncio.run(admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def queue_name() -> str:
    # One per test: jobs a test leaves queued when its app stops stay in its own queue,
    # instead of queueing ahead of the next test's work (the database is shared).
    return f"vouchsafe-test:{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def run_keys() -> dict[str, str]:
    """One pair of keys for the whole run, as one deployment has.

    Every test shares the run's database, so the codes in it stay readable by every later
    test's app, as they do across restarts of one deployment.
    """
    return {
        name: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        for name in ("VOUCHSAFE_SECRET_KEY", "VOUCHSAFE_CODE_KEY")
    }


# Jobs an earlier test left unfinished when its app stopped (a PDF still rendering, mail
# not yet sent). The database is shared by the run, so the next test's relay would hand
# them to its own worker, which takes one PDF chunk at a time: a test waiting for its own
# PDF then waits behind every chunk left before it (seen: 60 s and more).
_LEFTOVER_JOBS = "DELETE FROM outbox_message WHERE status IN ('PENDING', 'ENQUEUED')"
# Webhooks an earlier test left waiting for a receiver that is gone: every later worker would try them.
_LEFTOVER_WEBHOOKS = "UPDATE webhook_delivery SET status = 'FAILED', next_attempt_at = NULL WHERE status = 'PENDING'"


def _drop_leftover_jobs(database_url: str) -> None:
    if not ON_POSTGRES:
        with contextlib.closing(sqlite3.connect(database_url.split("://", 1)[1], timeout=10)) as conn, conn:
            conn.execute(_LEFTOVER_JOBS)
            conn.execute(_LEFTOVER_WEBHOOKS)
        return
    asyncio.run(admin_execute(f"{_LEFTOVER_JOBS}; {_LEFTOVER_WEBHOOKS}", database_url))


@pytest.fixture
def settings(tmp_path: Path, database_url: str, queue_name: str, run_keys: dict[str, str]) -> Settings:
    # Before any app or worker of this test runs, and after every one of the earlier tests stopped.
    _drop_leftover_jobs(database_url)
    env = {
        **run_keys,
        "VOUCHSAFE_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": database_url,
        "VOUCHSAFE_QUEUE_NAME": queue_name,
        "VOUCHSAFE_OUTBOX_SWEEP_SECONDS": "0.5",
        "VOUCHSAFE_DB_POOL_SIZE": "60",
    }
    if REDIS_URL:
        env["REDIS_URL"] = REDIS_URL
    return load_settings(env)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[None]:
    """The ORM open on the run's database, for tests that call services directly."""
    await database.open_db(settings.database_url, pool_size=settings.db_pool_size, apps=ORM_APPS)
    try:
        yield
    finally:
        await database.close_db()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Any]:
    from server import create_app

    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def burst_api(settings: Settings) -> AsyncIterator[Api]:
    """The app with no worker of its own: the test runs its jobs to the end (tests.support.running.run_jobs)."""
    async with without_worker(settings) as api:
        yield api


@pytest.fixture
async def api(app: Any) -> AsyncIterator[Api]:
    transport = httpx.ASGITransport(app=app, client=loopback_client())
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield Api(http)


@pytest.fixture
def production_settings(settings: Settings) -> Settings:
    return replace(settings, env="production")


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
async def smtp_api(settings: Settings, smtp: tuple[Inbox, int]) -> AsyncIterator[tuple[Api, Settings, Inbox]]:
    """An app sending mail to a real SMTP server; no worker of its own: the test runs the jobs (run_jobs)."""
    inbox, port = smtp
    app_settings = replace(settings, smtp_url=f"smtp://127.0.0.1:{port}")
    async with without_worker(app_settings) as api:
        yield api, app_settings, inbox


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A redis-server of the test's own (fault tests stop, freeze and restart it)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    own = OwnRedis(tmp_path)
    own.start()
    try:
        yield own
    finally:
        own.stop()
