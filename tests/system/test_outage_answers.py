"""F10 in one process: Redis frozen (SIGSTOP) under an app, and the PostgreSQL pool at its limit.

What does not need Redis keeps answering within the Redis timeout; what needs it (the
redemption's rate limit) is refused as SERVICE_UNAVAILABLE with a wait, in the payload.
A request that cannot get a database connection is refused as SERVICE_UNAVAILABLE (503).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from tortoise import connections

from server import create_app
from settings import Settings
from tests.support.api import Api, loopback_client
from tests.support.factories import line, order, partner
from tests.support.redis import OwnRedis

pytestmark = pytest.mark.postgres

TIMEOUT = 0.5  # VOUCHSAFE_REDIS_TIMEOUT_SECONDS here
# One request makes a few Redis calls in turn (cached-answer lookup, after-commit writes), each bounded.
BOUND = 4 * TIMEOUT + 1.0
REDEEM = """mutation R($input: VoucherRedeemInput!) { voucherRedeem(input: $input) {
  certificateRequest { id } errors { code message retryAfterSeconds } } }"""
BALANCE = """{ viewer { account { balance { amount } } } }"""
ORDERS = """{ voucherOrders(first: 5) { edges { node { id status } } } }"""


@pytest.fixture
async def frozen_api(settings: Settings, own_redis: OwnRedis) -> AsyncIterator[tuple[Api, OwnRedis]]:
    app = create_app(replace(settings, redis_url=own_redis.url, redis_timeout_seconds=TIMEOUT, db_pool_size=4))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=loopback_client())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield Api(http), own_redis


async def timed(api: Api, query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> Any:
    started = time.monotonic()
    result = await api(query, variables, token=token)
    took = time.monotonic() - started
    assert took < BOUND, (took, query)
    return result


async def test_a_frozen_redis_bounds_every_request(frozen_api: tuple[Api, OwnRedis]) -> None:
    api, redis = frozen_api
    # given: a funded partner, signed in while Redis answers
    p = await partner(api)
    assert redis.process is not None
    os.kill(redis.process.pid, signal.SIGSTOP)
    try:
        # when Redis is frozen: reads, the balance and orders answer, each within the bound
        balance = await timed(api, BALANCE, token=p["token"])
        assert balance["data"]["viewer"]["account"]["balance"]["amount"], balance
        placed = await order(api, p["token"], line("BASIC_OV", 1), paymentMethod="ACCOUNT_BALANCE")
        assert placed["errors"] == [], placed
        listed = await timed(api, ORDERS, token=p["token"])
        assert placed["order"]["id"] in {e["node"]["id"] for e in listed["data"]["voucherOrders"]["edges"]}
        # and a redemption, whose rate limit needs Redis, is refused with a code and a wait
        started = time.monotonic()
        refused = await timed(
            api,
            REDEEM,
            {"input": {"code": "AAAA-BBBB-CCCC-DDDD-EEEE", "commonName": "www.example.com"}},
            token=p["token"],
        )
        assert time.monotonic() - started < BOUND
        [error] = refused["data"]["voucherRedeem"]["errors"]
        assert error["code"] == "SERVICE_UNAVAILABLE", error
        assert error["retryAfterSeconds"] > 0
    finally:
        os.kill(redis.process.pid, signal.SIGCONT)
    # then: once Redis answers again, the redemption is judged on its merits (the code is unknown)
    answered = await timed(
        api, REDEEM, {"input": {"code": "AAAA-BBBB-CCCC-DDDD-EEEE", "commonName": "www.example.com"}}, token=p["token"]
    )
    assert [e["code"] for e in answered["data"]["voucherRedeem"]["errors"]] != ["SERVICE_UNAVAILABLE"], answered


async def test_no_database_connection_is_503_service_unavailable(frozen_api: tuple[Api, OwnRedis]) -> None:
    api, _ = frozen_api
    p = await partner(api)
    client: Any = connections.get("default")
    pool = client.pool
    held = [await pool.acquire() for _ in range(pool.get_max_size())]
    client.pool_timeout, before = 0.3, client.pool_timeout
    try:
        response = await api.http.post(
            "/graphql", json={"query": BALANCE}, headers={"Authorization": f"Bearer {p['token']}"}
        )
    finally:
        client.pool_timeout = before
        for connection in held:
            await pool.release(connection)
    assert response.status_code == 503, response.text
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert response.headers["Retry-After"] == str(error["extensions"]["retryAfterSeconds"])
