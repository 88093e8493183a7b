"""The embedded default's SQLite client: a transaction takes the write lock when it begins.

Tortoise begins a transaction with a plain BEGIN, which is a read transaction until its
first write. In WAL mode, a transaction that has read and then writes after another
process committed meanwhile cannot be upgraded: its snapshot is stale, and SQLite answers
"database is locked" at once, without waiting busy_timeout. Many transactions here read
first (a cancel's order lock is a plain SELECT on SQLite, a reveal reads its vouchers
before it writes the event), so a `vouchsafe worker` or a CLI command on the same file
made the API fail (tests/system/test_sqlite_concurrency.py). BEGIN IMMEDIATE
takes the write lock up front and waits busy_timeout for it. Inside one process nothing
changes: Tortoise runs one SQLite transaction at a time there anyway. Drop it when Tortoise
can begin IMMEDIATE itself (checked against upstream in tests/test_library_patches.py).
"""

from __future__ import annotations

import sqlite3

from tortoise.backends.base.client import TransactionContext
from tortoise.backends.sqlite.client import SqliteClient, SqliteTransactionContext, SqliteTransactionWrapper
from tortoise.exceptions import TransactionManagementError


class _ImmediateTransaction(SqliteTransactionWrapper):
    async def begin(self) -> None:
        try:
            # As Tortoise's own begin: end the implicit transaction aiosqlite may hold, then begin.
            await self._connection.commit()
            await self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise TransactionManagementError(exc) from exc


class ImmediateSqliteClient(SqliteClient):
    def _in_transaction(self) -> TransactionContext:
        return SqliteTransactionContext(_ImmediateTransaction(self), self._lock)


# Tortoise loads an engine module and takes its `client_class`.
client_class = ImmediateSqliteClient
