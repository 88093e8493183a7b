"""The stores a run uses: PostgreSQL + Redis when DATABASE_URL and REDIS_URL are set, else SQLite and the stand-in."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator

BASE_DATABASE_URL = os.environ.get("DATABASE_URL")
REDIS_URL = os.environ.get("REDIS_URL")
ON_POSTGRES = bool(BASE_DATABASE_URL)


async def admin_execute(sql: str, url: str | None = BASE_DATABASE_URL) -> None:
    import asyncpg

    assert url
    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@contextlib.asynccontextmanager
async def admin_database() -> AsyncIterator[str]:
    """An empty PostgreSQL database of the caller's own (e.g. for a deployed process to migrate); dropped after."""
    assert BASE_DATABASE_URL
    name = f"vouchsafe_test_{secrets.token_hex(4)}"
    await admin_execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(BASE_DATABASE_URL, name)
    finally:
        await admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
