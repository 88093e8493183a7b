"""The PostgreSQL server the benchmarks create their throwaway databases on (loopback only)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import asyncpg

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/test"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def server_url() -> str:
    url = (os.environ.get("DATABASE_URL") or DEFAULT_URL).replace("postgresql://", "postgres://", 1)
    parts = urlsplit(url)
    if parts.scheme != "postgres":
        raise SystemExit("bench: DATABASE_URL must name a PostgreSQL server (postgres://...)")
    if parts.hostname not in LOOPBACK:
        raise SystemExit(f"bench: runs against a loopback server only, not {parts.hostname!r}")
    return url


def with_database(url: str, name: str) -> str:
    base, _, _ = url.partition("?")[0].rpartition("/")
    return f"{base}/{name}"


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


async def admin_execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
