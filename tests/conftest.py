"""Test fixtures: one database per run (SQLite file, or a fresh PostgreSQL database).

With DATABASE_URL and REDIS_URL set the suite runs on PostgreSQL + Redis, in a
database it creates and drops, on a queue name of its own; without them it runs
on SQLite and the in-process Redis stand-in.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import email.policy
import os
import secrets
import socket
import sqlite3
import subprocess
import time
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

BASE_DATABASE_URL = os.environ.get("DATABASE_URL")
REDIS_URL = os.environ.get("REDIS_URL")
ON_POSTGRES = bool(BASE_DATABASE_URL)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ON_POSTGRES:
        return
    skip = pytest.mark.skip(reason="race and fault tests run on PostgreSQL + Redis (set DATABASE_URL, REDIS_URL)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


async def _admin_execute(sql: str, url: str | None = BASE_DATABASE_URL) -> None:
    import asyncpg

    assert url
    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@contextlib.asynccontextmanager
async def admin_database() -> AsyncIterator[str]:
    """An empty PostgreSQL database of the caller's own (e.g. for a deployed process to migrate); dropped after."""
    assert BASE_DATABASE_URL
    name = f"vouchsafe_test_{secrets.token_hex(4)}"
    await _admin_execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(BASE_DATABASE_URL, name)
    finally:
        await _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
    asyncio.run(_admin_execute(f'CREATE DATABASE "{name}"'))
    url = _with_database(BASE_DATABASE_URL, name)
    try:
        asyncio.run(database.migrate(url, apps=ORM_APPS))
        yield url
    finally:
        asyncio.run(_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


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
    asyncio.run(_admin_execute(f"{_LEFTOVER_JOBS}; {_LEFTOVER_WEBHOOKS}", database_url))


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


def loopback_client() -> tuple[str, int]:
    """A distinct loopback address per client, so per-client rate limits never leak between tests."""
    return (f"127.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 1}", 50000)


class Api:
    """A GraphQL client over the ASGI app, as a SPA would talk to it."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def __call__(self, query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    def client(self) -> Api:
        """Another client (another address) on the same app."""
        transport = httpx.ASGITransport(app=self.http._transport.app, client=loopback_client())  # type: ignore[attr-defined]
        return Api(httpx.AsyncClient(transport=transport, base_url="http://testserver"))


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Any]:
    from server import create_app

    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def api(app: Any) -> AsyncIterator[Api]:
    transport = httpx.ASGITransport(app=app, client=loopback_client())
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield Api(http)


@pytest.fixture
def production_settings(settings: Settings) -> Settings:
    return replace(settings, env="production")


async def wait_for(predicate: Any, *, within: float = 10.0, interval: float = 0.05) -> Any:
    """Poll an async predicate until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await predicate()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[None]:
    """A worker for the test's duration: the app has one in-process when embedded, otherwise start one."""
    if settings.embedded_redis:
        yield
        return
    from infra.redis import open_redis
    from workers.worker import embedded_worker

    redis = await open_redis(settings.redis_url, queue_name=settings.queue_name)
    # The embedded worker class only skips a log call; on real Redis it is arq's worker.
    worker = embedded_worker(settings, redis)
    task = asyncio.create_task(worker.main())
    try:
        yield
    finally:
        await worker.finish(task)
        await redis.aclose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


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

    from server import create_app

    inbox, port = smtp
    app_settings = replace(settings, smtp_url=f"smtp://127.0.0.1:{port}")
    app = create_app(app_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=loopback_client())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield Api(http), app_settings, inbox


class OwnRedis:
    """A redis-server of the test's own on a free loopback port: stopped and started at will, never the shared one."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.1):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None
