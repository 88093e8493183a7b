"""A transaction whose BEGIN or whose return to the pool fails leaves its task free of that connection.

(infra.pg_backend; PostgreSQL.) PostgreSQL terminates the connection a transaction has
just taken from the pool, so its BEGIN fails for real; or the connection of a transaction
that ends still open, so the pool's reset (its ROLLBACK) fails for real and asyncpg's
release raises. The task then runs its next statement (as a job records its failure, or
a long-lived task goes on): on Tortoise's own pooled context it still runs on the dead
connection; on ours, on a good one from the pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from tortoise import connections
from tortoise.backends.asyncpg.client import TransactionWrapper
from tortoise.backends.base.client import TransactionContext, TransactionContextPooled
from tortoise.exceptions import TransactionManagementError
from tortoise.transactions import in_transaction

from infra.database import PooledConnection, tortoise_config
from infra.faults import is_unavailable
from infra.pg_backend import BoundedAsyncpgClient
from settings import Settings

pytestmark = pytest.mark.postgres


async def terminate(settings: Settings, connection: Any) -> None:
    """PostgreSQL ends the connection's session (as pg_terminate_backend under load)."""
    admin = await asyncpg.connect(settings.database_url.replace("postgres://", "postgresql://", 1))
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", connection.get_server_pid())
    finally:
        await admin.close()
    await asyncio.sleep(0.2)  # the termination reaches the client's socket


@pytest.fixture
def begin_on_a_terminated_connection(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """BEGIN, once, on a connection PostgreSQL has just terminated."""
    original = TransactionWrapper.begin
    done: list[bool] = []

    async def begin(self: TransactionWrapper) -> None:
        if not done:
            done.append(True)
            await terminate(settings, self._connection)
        await original(self)

    monkeypatch.setattr(TransactionWrapper, "begin", begin)


@pytest.fixture
def reset_on_a_terminated_connection(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool's reset of a connection given back mid-transaction, once, after PostgreSQL terminated it."""
    original = PooledConnection.reset
    done: list[bool] = []

    async def reset(self: PooledConnection, *, timeout: float | None = None) -> None:  # noqa: ASYNC109  # asyncpg's signature
        if not done:
            done.append(True)
            await terminate(settings, self)
        await original(self, timeout=timeout)

    monkeypatch.setattr(PooledConnection, "reset", reset)


Context = Callable[[BoundedAsyncpgClient], TransactionContext]


async def next_statement_after(context: Context, *, left_open: bool) -> Any:
    """In a task of its own: a transaction that fails (its BEGIN, or, left open, its return to the pool),
    then the task's next statement. Tortoise skips the ROLLBACK after a TransactionManagementError."""
    client = connections.get("default")
    assert isinstance(client, BoundedAsyncpgClient)

    async def task() -> Any:
        failure: BaseException | None = None
        try:
            async with context(client):
                if left_open:
                    raise TransactionManagementError("ends with the transaction open")
        except Exception as exc:
            failure = exc
        assert not isinstance(failure, TransactionManagementError | None), failure
        assert is_unavailable(failure), failure
        return await connections.get("default").execute_query_dict("SELECT 1 AS one")

    return await asyncio.wait_for(asyncio.create_task(task()), timeout=10)


def ours(client: BoundedAsyncpgClient) -> TransactionContext:
    return in_transaction(client.connection_name)


def tortoises(client: BoundedAsyncpgClient) -> TransactionContext:
    # What Tortoise's AsyncpgDBClient._in_transaction returns, on our client.
    return TransactionContextPooled(TransactionWrapper(client), client._pool_init_lock)  # noqa: SLF001


async def test_after_a_failed_begin_the_task_runs_on_a_good_connection(
    db: None, begin_on_a_terminated_connection: None
) -> None:
    assert await next_statement_after(ours, left_open=False) == [{"one": 1}]


async def test_tortoise_itself_still_leaves_the_task_on_the_dead_connection(
    db: None, begin_on_a_terminated_connection: None
) -> None:
    """When this fails, Tortoise unbinds by itself: drop infra.pg_backend._SafeTransactionContext."""
    with pytest.raises(asyncpg.InterfaceError, match=r"connection is closed|released back to the pool"):
        await next_statement_after(tortoises, left_open=False)


async def test_after_a_failed_return_to_the_pool_the_task_runs_on_a_good_connection(
    db: None, reset_on_a_terminated_connection: None
) -> None:
    assert await next_statement_after(ours, left_open=True) == [{"one": 1}]


async def test_tortoise_itself_still_leaves_the_task_bound_after_a_failed_return(
    db: None, reset_on_a_terminated_connection: None
) -> None:
    """When this fails, Tortoise unbinds by itself at the end too: drop _SafeTransactionContext.__aexit__."""
    with pytest.raises(asyncpg.InterfaceError, match=r"connection is closed|released back to the pool"):
        await next_statement_after(tortoises, left_open=True)


async def test_a_pool_wait_is_bounded(settings: Settings) -> None:
    # given: a one-connection pool with a 0.3 s acquire timeout, its connection taken
    config = tortoise_config(settings.database_url, apps={}, pool_size=1, pool_timeout=0.3)
    client = BoundedAsyncpgClient(connection_name="pool-test", **config["connections"]["default"]["credentials"])
    await client.create_connection(with_db=True)
    try:
        pool = client.pool
        assert pool is not None
        held = await pool.acquire()
        try:
            # when / then: the next statement gives up after the pool timeout, as an outage
            started = asyncio.get_running_loop().time()
            with pytest.raises(TimeoutError) as waited:
                await client.execute_query("SELECT 1")
            assert asyncio.get_running_loop().time() - started < 2
            assert is_unavailable(waited.value)
        finally:
            await pool.release(held)
        assert await client.execute_query_dict("SELECT 1 AS one") == [{"one": 1}]
    finally:
        await client.close()


async def test_a_statement_over_the_statement_timeout_is_cancelled_by_the_server(settings: Settings) -> None:
    config = tortoise_config(settings.database_url, apps={}, pool_size=1, statement_timeout=0.3)
    client = BoundedAsyncpgClient(connection_name="timeout-test", **config["connections"]["default"]["credentials"])
    await client.create_connection(with_db=True)
    try:
        with pytest.raises(asyncpg.QueryCanceledError) as cancelled:
            await client.execute_query("SELECT pg_sleep(3)")
        assert is_unavailable(cancelled.value)
        assert await client.execute_query_dict("SELECT 1 AS one") == [{"one": 1}]
    finally:
        await client.close()
