"""Recovery in seconds (issue 20): lost jobs are offered again at once, outages are SERVICE_UNAVAILABLE.

Runs on both backends: SQLite + the in-process Redis stand-in, and PostgreSQL + Redis.
A Redis that is gone is a real client on a port nothing listens on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from arq import Retry
from arq.connections import ArqRedis
from arq.constants import job_key_prefix

from infra.faults import is_unavailable
from infra.ratelimit import Limit, RateLimiter
from infra.redis import ArqQueue, open_redis
from models import OutboxMessage, OutboxStatus
from services import limits, outbox
from services.errors import DomainError, ErrorCode
from settings import Settings, SettingsError, load_settings
from tests.support.fault_cluster import outage_traceback_problems
from tests.support.running import free_port, shifted
from workers import tasks

LIMIT = Limit("recovery-test", max_hits=5, window_seconds=60)


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[ArqRedis]:
    client = await open_redis(settings.redis_url, queue_name=settings.queue_name)
    try:
        yield client
    finally:
        await client.aclose()


async def gone_redis() -> ArqRedis:
    """A client of a Redis that is not there (connect refused at once), with the project's timeouts."""
    port = free_port()
    pool_client = ArqRedis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.5, socket_timeout=0.5)
    return pool_client


async def enqueued_row(queue: ArqQueue) -> int:
    row = await OutboxMessage.create(task="no_such_task_in_this_test", payload={})
    assert await outbox.relay_pending(queue) >= 1
    await row.refresh_from_db()
    assert row.status == OutboxStatus.ENQUEUED
    return row.id


class TestLostJobs:
    async def test_a_job_redis_lost_is_offered_again_at_the_next_sweep(self, db: None, redis: ArqRedis) -> None:
        # given: a row handed to the queue, whose job Redis then loses (restarted empty)
        queue = ArqQueue(redis)
        message_id = await enqueued_row(queue)
        full_id = f"{redis.default_queue_name}:{outbox.job_id(message_id)}"
        assert await redis.exists(job_key_prefix + full_id)
        with shifted(timedelta(seconds=3)):
            assert (message_id, "no_such_task_in_this_test") not in await outbox.lost_jobs(queue)
        await redis.delete(job_key_prefix + full_id)
        # when: the next sweep runs, seconds later (not 15 minutes)
        with shifted(timedelta(seconds=3)):
            lost = await outbox.lost_jobs(queue)
            await outbox.relay_pending(queue)
        # then: it was found lost and handed to the queue again, under the same job id
        assert (message_id, "no_such_task_in_this_test") in lost
        assert await redis.exists(job_key_prefix + full_id)
        await OutboxMessage.filter(id=message_id).delete()
        await redis.delete(job_key_prefix + full_id)

    async def test_a_row_just_enqueued_is_left_alone(self, db: None, redis: ArqRedis) -> None:
        # given: a row enqueued a moment ago whose job is not (yet) visible to this sweep
        queue = ArqQueue(redis)
        message_id = await enqueued_row(queue)
        await redis.delete(job_key_prefix + f"{redis.default_queue_name}:{outbox.job_id(message_id)}")
        # then: within REOFFER_AFTER it is not taken for lost
        assert all(row_id != message_id for row_id, _ in await outbox.lost_jobs(queue))
        await OutboxMessage.filter(id=message_id).delete()

    async def test_a_job_whose_database_fails_retries_instead_of_dropping_its_row(
        self, settings: Settings, db: None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # given: the database fails under the job's claim (a terminated connection)
        async def unreachable(*args: Any, **kwargs: Any) -> outbox.Outcome:
            raise ConnectionResetError("connection reset by peer")

        monkeypatch.setattr(outbox, "run", unreachable)
        # when / then: arq is asked to run it again (only a Retry is retried), soon
        with pytest.raises(Retry) as retried:
            await tasks.run_outbox({"settings": settings, "handlers": {}, "job_try": 1}, 123)
        assert retried.value.defer_score == tasks.UNREACHABLE_RETRY_SECONDS * 1000


class TestRateLimitFailsClosed:
    async def test_redis_gone_is_service_unavailable_not_an_internal_error(self) -> None:
        redis = await gone_redis()
        try:
            limiter = RateLimiter(redis, namespace="recovery-test")
            with pytest.raises(DomainError) as refused:
                await limits.count_attempt(limiter, [(LIMIT, "203.0.113.9")])
        finally:
            await redis.aclose()
        assert refused.value.code == ErrorCode.SERVICE_UNAVAILABLE
        assert refused.value.retry_after_seconds is not None
        assert refused.value.retry_after_seconds > 0

    async def test_a_redis_that_answers_still_counts(self, redis: ArqRedis) -> None:
        limiter = RateLimiter(redis, namespace=f"recovery-test-{free_port()}")
        for _ in range(LIMIT.max_hits):
            await limits.count_attempt(limiter, [(LIMIT, "203.0.113.10")])
        with pytest.raises(DomainError) as refused:
            await limits.count_attempt(limiter, [(LIMIT, "203.0.113.10")])
        assert refused.value.code == ErrorCode.RATE_LIMITED


class TestFaultsAreRecognised:
    @pytest.mark.parametrize(
        "exc",
        [TimeoutError(), ConnectionRefusedError(), OSError(104, "reset")],
        ids=["timeout", "refused", "reset"],
    )
    def test_outages(self, exc: BaseException) -> None:
        assert is_unavailable(exc)

    def test_an_outage_under_another_exception(self) -> None:
        outer = RuntimeError("wrapped")
        outer.__cause__ = TimeoutError()
        assert is_unavailable(outer)

    def test_a_terminated_idle_connection(self) -> None:
        error = "cannot switch to state 12; another operation (2) is in progress"
        assert is_unavailable(asyncpg.exceptions.InternalClientError(error))
        assert not is_unavailable(asyncpg.exceptions.InternalClientError(error.replace("(2)", "(12)")))

    @pytest.mark.parametrize("exc", [ValueError("bug"), KeyError("x"), ZeroDivisionError()])
    def test_bugs_are_not_outages(self, exc: BaseException) -> None:
        assert not is_unavailable(exc)


class TestSettings:
    def test_defaults_and_overrides(self, tmp_path: Any) -> None:
        base = {"VOUCHSAFE_DATA_DIR": str(tmp_path)}
        defaults = load_settings(base)
        assert (
            defaults.redis_timeout_seconds,
            defaults.db_statement_timeout_seconds,
            defaults.db_pool_timeout_seconds,
            defaults.job_lease_seconds,
            defaults.job_timeout_seconds,
        ) == (1.5, 10.0, 5.0, 10.0, 180)
        chosen = load_settings(
            {
                **base,
                "VOUCHSAFE_REDIS_TIMEOUT_SECONDS": "0.5",
                "VOUCHSAFE_DB_STATEMENT_TIMEOUT_SECONDS": "3",
                "VOUCHSAFE_DB_POOL_TIMEOUT_SECONDS": "2",
                "VOUCHSAFE_JOB_LEASE_SECONDS": "4",
            }
        )
        assert chosen.job_lease_seconds == 4.0
        assert (chosen.redis_timeout_seconds, chosen.db_statement_timeout_seconds, chosen.db_pool_timeout_seconds) == (
            0.5,
            3.0,
            2.0,
        )

    @pytest.mark.parametrize("value", ["0", "-1", "nan", "soon", "100000"])
    @pytest.mark.parametrize("name", ["VOUCHSAFE_REDIS_TIMEOUT_SECONDS", "VOUCHSAFE_JOB_LEASE_SECONDS"])
    def test_nonsense_is_refused(self, tmp_path: Any, name: str, value: str) -> None:
        with pytest.raises(SettingsError, match=name):
            load_settings({"VOUCHSAFE_DATA_DIR": str(tmp_path), name: value})


class TestTheFaultTestsLogCheck:
    """F12 allows tracebacks of the faults it makes, and nothing else (tests.fault_cluster)."""

    def test_a_fault_s_traceback_is_allowed(self) -> None:
        log = (
            'outbox message 7 failed\nTraceback (most recent call last):\n  File "x.py", line 1, in f\n'
            "asyncpg.exceptions.ConnectionDoesNotExistError: connection was closed in the middle of operation\n"
        )
        assert outage_traceback_problems(log) == []

    def test_any_other_traceback_or_masked_error_is_a_problem(self) -> None:
        log = (
            "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\nKeyError: 'order'\n"
            "ERROR vouchsafe.graphql unexpected error in voucherRedeem (request abc)\n"
        )
        assert len(outage_traceback_problems(log)) == 2
