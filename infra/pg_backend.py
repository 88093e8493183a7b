"""The PostgreSQL client: Tortoise's asyncpg client with bounded pool waits and a safe BEGIN.

Two changes to `tortoise.backends.asyncpg`, both about a database that is slow or gone:

- Taking a connection from the pool waits at most `pool_timeout` seconds
  (VOUCHSAFE_DB_POOL_TIMEOUT_SECONDS); Tortoise waits for ever. The caller gets a
  TimeoutError, which the API answers as SERVICE_UNAVAILABLE (infra.faults).
- A transaction whose BEGIN fails is undone. Tortoise 1.1's TransactionContextPooled
  binds the task to the transaction's connection (a context variable) *before* BEGIN,
  and when BEGIN raises (a connection PostgreSQL terminated) `__aexit__` never runs: the
  connection is never given back, and every later statement of the task (recording the
  failure, the next transaction, a job's next row) runs on that dead or, once the pool
  reclaims it, shared connection ("connection has been released back to the pool",
  "cannot switch to state 12"). The same at the end: a transaction whose connection
  cannot go back to the pool (asyncpg re-raises its failed reset) leaves the task bound
  to it, so `__aexit__` unbinds whatever happens. Drop `_SafeTransactionContext` when
  tests/services/test_pg_backend.py's checks of the library's own context start to fail
  (the library then unbinds by itself); tests/test_library_patches.py checks the upstream code.
"""

from __future__ import annotations

import contextlib
from typing import Any

from tortoise.backends.asyncpg.client import AsyncpgDBClient, TransactionWrapper
from tortoise.backends.base.client import PoolConnectionWrapper, TransactionalDBClient, TransactionContextPooled
from tortoise.connection import get_connections


class _BoundedAcquire(PoolConnectionWrapper[Any]):
    async def __aenter__(self) -> Any:
        await self.ensure_connection()
        client: BoundedAsyncpgClient = self.client  # type: ignore[assignment]  # always ours here
        pool = client.pool
        assert pool is not None
        self.connection = await pool.acquire(timeout=client.pool_timeout)
        return self.connection


class _SafeTransactionContext(TransactionContextPooled):
    """Tortoise's pooled transaction context; a failed BEGIN, or a failed return to the pool, unbinds the task."""

    async def __aenter__(self) -> TransactionalDBClient:
        await self.ensure_connection()
        # Tortoise's own context reads these two the same way (tests/test_library_patches.py).
        parent: BoundedAsyncpgClient = self.client._parent  # type: ignore[assignment]  # noqa: SLF001
        pool = parent.pool
        assert pool is not None
        connection = await pool.acquire(timeout=parent.pool_timeout)
        self.client._connection = connection  # noqa: SLF001
        self.token = get_connections().set(self.connection_name, self.client)
        try:
            await self.client.begin()
        except BaseException:
            # What __aexit__ would have done: the task no longer sees this connection, the pool has it back.
            get_connections().reset(self.token)
            await pool.release(connection)
            raise
        return self.client

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        try:
            await super().__aexit__(exc_type, exc_val, exc_tb)
        finally:
            # Tortoise unbinds the task only after the pool took the connection back, and asyncpg's
            # release re-raises a failed reset (a terminated connection): the task stayed bound to it.
            with contextlib.suppress(ValueError):  # already unbound by Tortoise: its token is used
                get_connections().reset(self.token)


class BoundedAsyncpgClient(AsyncpgDBClient):
    def __init__(self, *, pool_timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pool_timeout = pool_timeout

    @property
    def pool(self) -> Any:
        return self._pool

    def acquire_connection(self) -> Any:
        return _BoundedAcquire(self, self._pool_init_lock)

    def _in_transaction(self) -> _SafeTransactionContext:
        return _SafeTransactionContext(TransactionWrapper(self), self._pool_init_lock)


# Tortoise loads an engine module and takes its `client_class`.
client_class = BoundedAsyncpgClient
