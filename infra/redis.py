"""Redis for the queue, rate limits and events: real Redis, or the in-process stand-in."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import fakeredis
from arq.connections import ArqRedis, RedisSettings
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix
from fakeredis.aioredis import FakeAsyncRedisConnection
from redis.asyncio import ConnectionPool
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError, RedisError

from infra import metrics, tracing

log = logging.getLogger(__name__)

ERRORS = metrics.counter("vouchsafe_redis_errors_total", "Redis commands that failed, by error class.", ["error"])

# One stand-in per process: the API, its in-process worker and its relay share it.
_FAKE_SERVER = fakeredis.FakeServer()


def fake_server() -> fakeredis.FakeServer:
    return _FAKE_SERVER


class CheckOutsideLockPool(ConnectionPool):
    """redis-py's pool, checking a connection after its lock rather than under it.

    redis-py 5.3 holds the pool's lock while it checks the connection it hands out, and
    the check is a read with a zero timeout: at least one turn of the event loop. So
    every command of the process queued behind every other command's check (measured:
    bench/README.md, W3). Moving it out is what the library's own BlockingConnectionPool
    does, and what its issue #3692 asks of this one: the lock still covers taking a
    connection, which awaits nothing; the check is on a connection no other task has.
    Drop it when redis-py does the same (checked against upstream in tests/test_library_patches.py).
    """

    async def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
        async with self._lock:
            connection = self.get_available_connection()  # type: ignore[no-untyped-call]  # redis-py is untyped here
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection


class _Pipeline(Pipeline):
    """redis-py's pipeline, giving its connection back when the UNWATCH of its reset times out.

    redis-py 5.3 undoes a WATCH (arq's enqueue) with UNWATCH and gives the connection back
    only if that fails with a ConnectionError. A frozen Redis answers nothing and the
    socket timeout raises TimeoutError: the reset then raised over the real error and the
    connection stayed in use for ever (one per relay sweep while Redis was frozen). Drop it when
    redis-py gives the connection back on any error (checked in tests/test_library_patches.py).
    """

    async def reset(self) -> None:
        try:
            await super().reset()  # type: ignore[no-untyped-call]  # redis-py is untyped here
        except (RedisError, OSError, TimeoutError):
            self.watching = False
            self.explicit_transaction = False
            if self.connection:
                await self.connection.disconnect()  # also drops the server's WATCH
                await self.connection_pool.release(self.connection)
                self.connection = None


class CountingRedis(ArqRedis):
    """arq's client, counting the commands that fail (pipelines and pub/sub count where they are caught)."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            if tracing.enabled:
                command = str(args[0]).upper() if args else "?"
                # The command's name only: keys and values may carry data.
                with tracing.span(
                    f"redis {command}", kind="client", attributes={"db.system": "redis", "db.operation": command}
                ):
                    return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except NoScriptError:  # redis-py loads the script and sends it again: not a failure
            raise
        except (RedisError, OSError) as exc:
            count_error(exc)
            raise

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return _Pipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


def count_error(exc: BaseException) -> None:
    ERRORS.labels(type(exc).__name__).inc()


def _client(pool: ConnectionPool, queue_name: str) -> ArqRedis:
    redis = CountingRedis(connection_pool=pool, default_queue_name=queue_name)
    # It owns its pool, as create_pool's clients do: aclose() closes the connections too.
    redis.auto_close_connection_pool = True
    return redis


# Every command's bound (VOUCHSAFE_REDIS_TIMEOUT_SECONDS): a frozen Redis accepts connections
# and never answers, and without a socket timeout each request waited on it for half a minute.
DEFAULT_TIMEOUT_SECONDS = 1.5


async def open_redis(
    redis_url: str | None, *, queue_name: str = "arq:queue", command_timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> ArqRedis:
    """A client whose every connect, command and reply is bounded by `command_timeout` seconds."""
    if redis_url is None:
        return _client(CheckOutsideLockPool(connection_class=FakeAsyncRedisConnection, server=_FAKE_SERVER), queue_name)
    # As arq's create_pool, but on the pool above: retried while Redis is starting.
    settings = RedisSettings.from_dsn(redis_url)
    for attempt in range(settings.conn_retries + 1):
        pool = CheckOutsideLockPool.from_url(
            redis_url,
            socket_connect_timeout=min(command_timeout, settings.conn_timeout),
            socket_timeout=command_timeout,
        )
        redis = _client(pool, queue_name)
        try:
            await redis.ping()
            return redis
        except (TimeoutError, RedisError, OSError) as exc:
            await redis.aclose()
            if attempt == settings.conn_retries:
                raise
            log.warning("Redis not reachable (%s), retrying in %s s", exc, settings.conn_retry_delay)
            await asyncio.sleep(settings.conn_retry_delay)
    raise AssertionError("unreachable")


class ArqQueue:
    """The outbox's JobQueue port on arq."""

    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis

    async def enqueue(self, function: str, *args: Any, job_id: str) -> None:
        # arq's job keys are global in Redis, not per queue: the queue name keeps the
        # ids of deployments (and databases) sharing one Redis apart. None back from
        # arq means the job is already queued or running: that is the dedupe.
        await self.redis.enqueue_job(function, *args, _job_id=f"{self.redis.default_queue_name}:{job_id}")

    async def held(self, job_ids: list[str]) -> set[str]:
        """The jobs Redis still has: queued or deferred (job key), running (in-progress key) or a result."""
        full = [f"{self.redis.default_queue_name}:{job_id}" for job_id in job_ids]
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in full:
                pipe.exists(job_key_prefix + name, in_progress_key_prefix + name, result_key_prefix + name)
            counts = await pipe.execute()
        return {job_id for job_id, count in zip(job_ids, counts, strict=True) if count}
