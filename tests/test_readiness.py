"""/readyz fails when the process lost its live-updates subscription or its database pool is exhausted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from tortoise import connections

from server import create_app
from settings import Settings
from tests.support.redis import OwnRedis
from tests.support.running import wait_for

pytestmark = pytest.mark.postgres


@pytest.fixture
async def small_app(settings: Settings, own_redis: OwnRedis) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    app = create_app(replace(settings, redis_url=own_redis.url, db_pool_size=2))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield app, http


async def test_readyz_fails_while_the_live_subscription_is_lost(
    small_app: tuple[Any, httpx.AsyncClient], own_redis: OwnRedis
) -> None:
    app, http = small_app
    hub = app.state.resources.hub
    await asyncio.wait_for(hub.connected.wait(), timeout=10)
    assert (await http.get("/readyz")).status_code == 200
    hub.retry_seconds = 30.0  # it stays away long enough to be seen
    admin = Redis.from_url(own_redis.url)
    try:
        await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    finally:
        await admin.aclose()
    # The redis-server (another process) drops the connection; the hub notices in its own time.
    await wait_for(lambda: asyncio.sleep(0, not hub.connected.is_set()), within=10)
    ready = await http.get("/readyz")
    assert ready.status_code == 503, ready.text
    assert ready.json()["live"] == "error: subscription lost"
    assert ready.json()["redis"] == "ok"
    assert ready.json()["database"] == "ok"


async def test_readyz_fails_while_the_database_pool_is_exhausted(small_app: tuple[Any, httpx.AsyncClient]) -> None:
    _, http = small_app
    client = connections.get("default")
    await client.execute_query("SELECT 1")  # the pool is made on the first statement
    pool = client._pool  # noqa: SLF001  # asyncpg's pool under Tortoise's client: held here to exhaust it
    assert pool is not None
    assert pool.get_max_size() == 2
    held = [await pool.acquire(), await pool.acquire()]
    waiter = asyncio.ensure_future(pool.acquire())
    try:
        await asyncio.sleep(0.05)
        ready = await http.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.json()["database_pool"] == "error: exhausted"
    finally:
        for connection in held:
            await pool.release(connection)
        await pool.release(await waiter)
    ready = await http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["database_pool"] == "ok"
