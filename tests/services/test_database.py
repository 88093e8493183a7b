"""The PostgreSQL pool gives connections back without asyncpg's reset statement; nothing relies on one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tortoise import connections

from infra.database import PooledConnection

ROOT = Path(__file__).resolve().parents[2]
# Session state a reset statement would clear (infra.database.PooledConnection).
SESSION_STATE = re.compile(
    r"pg_advisory_lock|\bLISTEN\b|WITH HOLD"
    r"|[\"']\s*SET\s+(SESSION\s+)?\w+\s*(=|TO\b)",  # a SET statement, not an UPDATE's SET clause
)


def test_no_code_keeps_session_state_on_pooled_connections() -> None:
    sources = [p for d in ("infra", "services", "workers", "schema", "web") for p in (ROOT / d).rglob("*.py")]
    sources += [ROOT / "server.py", ROOT / "cli.py", ROOT / "cli_products.py"]
    sources.remove(ROOT / "infra" / "database.py")  # its docstring names them
    offenders = [str(p.relative_to(ROOT)) for p in sources if SESSION_STATE.search(p.read_text())]
    assert offenders == []


@pytest.mark.postgres
async def test_a_released_connection_is_clean_without_a_reset_statement(db: None) -> None:
    client = connections.get("default")
    async with client.acquire_connection() as raw:
        assert isinstance(raw, PooledConnection)
        assert raw.get_reset_query() == ""
        backend = await raw.fetchval("SELECT pg_backend_pid()")
        await raw.execute("BEGIN")
        await raw.execute("CREATE TEMPORARY TABLE left_open (x int) ON COMMIT DROP")
    # asyncpg still rolls back a transaction left open: the next user of that session finds none.
    pool = client._pool  # noqa: SLF001  # the asyncpg pool Tortoise keeps
    for _ in range(pool.get_max_size()):
        async with pool.acquire() as again:
            if await again.fetchval("SELECT pg_backend_pid()") == backend:
                assert not again.is_in_transaction()
                assert await again.fetchval("SELECT to_regclass('pg_temp.left_open')") is None
                return
    pytest.fail("the session did not come back to the pool")
