"""A mutation's Redis writes after its commits go in one round trip, and every one of them lands."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from infra import response_cache
from models import User
from settings import Settings
from tests.support.api import Api
from tests.support.factories import codes_of, line, partner, redeem, tenant


def round_trips(redis: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The commands and pipelines sent to Redis from this task from now on, one entry a round trip.

    Only this task's: the app's background tasks (outbox relay, live hub, embedded worker)
    use the same client from tasks of their own.
    """
    task, trips = asyncio.current_task(), []
    execute_command, pipeline = redis.execute_command, redis.pipeline

    async def counted_command(*args: Any, **options: Any) -> Any:
        if asyncio.current_task() is task:
            trips.append(str(args[0]))
        return await execute_command(*args, **options)

    def counted_pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = pipeline(*args, **kwargs)
        execute = pipe.execute

        async def counted_execute(*eargs: Any, **ekwargs: Any) -> Any:
            if asyncio.current_task() is task:
                # Each command with its key: "pipeline: DECR <key> EXPIRE <key> ..."
                trips.append(" ".join(["pipeline:", *(f"{c[0][0]} {c[0][1]}" for c in pipe.command_stack)]))
            return await execute(*eargs, **ekwargs)

        pipe.execute = counted_execute
        return pipe

    monkeypatch.setattr(redis, "execute_command", counted_command)
    monkeypatch.setattr(redis, "pipeline", counted_pipeline)
    return trips


async def versions(redis: Any, settings: Settings, *account_ids: int) -> list[int]:
    return [await response_cache.version(redis, settings.queue_name, a) for a in account_ids]


async def test_a_redemption_reaches_redis_twice_and_its_writes_land(
    api: Api, app: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a partner's code, and a customer of another tenant
    p = await partner(api)
    [code, _] = await codes_of(api, p)
    customer = await tenant(api)
    redis = app.state.resources.redis
    customer_account = (await User.get(email=customer["email"])).account_id
    assert customer_account is not None
    before = await versions(redis, settings, p["account_id"], customer_account)
    trips = round_trips(redis, monkeypatch)
    # when: the customer redeems it
    done = await redeem(api, customer["token"], code)
    # then: Redis was reached twice, the attempt counted before and one pipeline after the commit
    assert done["errors"] == [], done
    assert len(trips) == 2, trips
    assert trips[0] == "EVALSHA", trips
    assert trips[1].startswith("pipeline:"), trips
    assert "PUBLISH" in trips[1], trips
    # and each write landed: the hit forgiven, the owner's and the caller's answers retired
    counters = [int(await redis.get(k)) async for k in redis.scan_iter(match=f"{settings.queue_name}:rl:redeem:*")]
    assert counters
    assert set(counters) == {0}
    for account_id in (p["account_id"], customer_account):
        assert f"INCRBY {response_cache.version_key(settings.queue_name, account_id)}" in trips[1], trips
    # The owner's version may move on its own meanwhile: the embedded worker announces the
    # order's PDF (PDF_PENDING, PDF_READY) from a task of its own. The caller's cannot.
    owner_after, caller_after = await versions(redis, settings, p["account_id"], customer_account)
    assert owner_after >= before[0] + 1
    assert caller_after == before[1] + 1


async def test_one_request_redeems_more_codes_than_the_limit_allows_attempts_in_flight(api: Api) -> None:
    # Each hit is forgiven before the next attempt of the same request counts (10 in flight are allowed).
    p = await partner(api)
    codes = await codes_of(api, p, line("BASIC_OV", 12))
    customer = await tenant(api)
    fields = " ".join(
        f'r{i}: voucherRedeem(input: {{code: "{c}", commonName: "www.example.com"}}) {{ errors {{ code }} }}'
        for i, c in enumerate(codes)
    )
    result = await api("mutation { " + fields + " }", token=customer["token"])
    assert "errors" not in result, result
    assert [r["errors"] for r in result["data"].values()] == [[]] * 12
