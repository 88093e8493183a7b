"""Opening, migrating and closing the database."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from tortoise import Tortoise, connections
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.migrations.api import migrate as tortoise_migrate


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """An asyncpg connection that goes back to its pool without a reset statement.

    asyncpg's pool sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL` on every release: a round trip after every statement run outside a
    transaction, a large share of a redemption's CPU (bench/README.md, W3). This
    application leaves none of that state on a session: no advisory locks, no LISTEN
    (live updates go through Redis), no SET, cursors only inside transactions, which
    end with them. asyncpg still rolls back a transaction left open (a cancelled
    request) before the connection is reused. Code that starts keeping session state
    must reset it itself, or this must go. Drop it when asyncpg skips the reset for a clean
    session (checked against upstream in tests/test_library_patches.py).
    """

    def get_reset_query(self) -> str:
        return ""


def tortoise_config(
    database_url: str,
    *,
    apps: Mapping[str, Any],
    pool_size: int = 20,
    statement_timeout: float | None = None,
    pool_timeout: float | None = None,
) -> dict[str, Any]:
    """The Tortoise configuration for one database URL (sqlite:// or postgres://) and the given apps.

    On PostgreSQL, `statement_timeout` (seconds) is set on every connection of the pool, and
    `pool_timeout` bounds both taking a connection from the pool and opening a new one.
    """
    if database_url.startswith("sqlite"):
        path = database_url.split("://", 1)[1]
        connection: dict[str, Any] = {
            "engine": "infra.sqlite_backend",
            "credentials": {
                "file_path": path,
                # WAL lets the API read while a worker process writes; busy_timeout
                # makes a second process wait for the write lock instead of failing,
                # and the engine begins transactions IMMEDIATE so that it can (tests/system/test_sqlite_concurrency.py).
                "journal_mode": "WAL",
                "busy_timeout": 10_000,
                "foreign_keys": "ON",
            },
        }
    else:
        connection = expand_db_url(database_url.replace("postgresql://", "postgres://", 1))
        connection["engine"] = "infra.pg_backend"  # bounded pool waits, a safe BEGIN (see there)
        credentials = connection["credentials"]
        credentials.update(minsize=1, maxsize=pool_size, connection_class=PooledConnection, pool_timeout=pool_timeout)
        if pool_timeout is not None:
            credentials["timeout"] = pool_timeout  # asyncpg's connect timeout (60 s by default)
        if statement_timeout is not None:
            # The server cancels a statement running longer; the API answers SERVICE_UNAVAILABLE.
            settings = dict(credentials.get("server_settings") or {})
            settings["statement_timeout"] = str(int(statement_timeout * 1000))
            credentials["server_settings"] = settings
    return {
        "connections": {"default": connection},
        "apps": {label: {**app, "default_connection": "default"} for label, app in apps.items()},
        "use_tz": True,
        "timezone": "UTC",
    }


async def migrate(database_url: str, *, apps: Mapping[str, Any]) -> None:
    """Apply every migration not yet applied."""
    await tortoise_migrate(config=tortoise_config(database_url, apps=apps, pool_size=2))
    await Tortoise.close_connections()


async def open_db(
    database_url: str,
    *,
    apps: Mapping[str, Any],
    pool_size: int = 20,
    statement_timeout: float | None = None,
    pool_timeout: float | None = None,
) -> None:
    # The global fallback makes the ORM visible to every task of the process
    # (uvicorn serves requests in tasks that do not inherit the lifespan's context).
    config = tortoise_config(
        database_url, apps=apps, pool_size=pool_size, statement_timeout=statement_timeout, pool_timeout=pool_timeout
    )
    await Tortoise.init(config=config, _enable_global_fallback=True)


async def close_db() -> None:
    await Tortoise.close_connections()


@dataclass(frozen=True)
class PoolStats:
    size: int  # connections open
    max_size: int
    in_use: int
    waiting: int  # acquisitions waiting for a free connection

    @property
    def exhausted(self) -> bool:
        return self.in_use >= self.max_size and self.waiting > 0


def pool_stats() -> PoolStats | None:
    """The PostgreSQL pool of the default connection now; None on SQLite (one connection, no pool)."""
    try:
        pool = getattr(connections.get("default"), "_pool", None)
    except Exception:  # not open (yet, or any more)
        return None
    if not isinstance(pool, asyncpg.Pool):
        return None
    # asyncpg counts no waiters publicly: they are the getters of its queue of free connections.
    getters = getattr(getattr(pool, "_queue", None), "_getters", ())
    waiting = sum(1 for getter in getters if not getter.done())
    size = pool.get_size()
    return PoolStats(size=size, max_size=pool.get_max_size(), in_use=size - pool.get_idle_size(), waiting=waiting)
