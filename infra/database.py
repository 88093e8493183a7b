"""Opening, migrating and closing the database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
from tortoise import Tortoise
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


def tortoise_config(database_url: str, *, apps: Mapping[str, Any], pool_size: int = 20) -> dict[str, Any]:
    """The Tortoise configuration for one database URL (sqlite:// or postgres://) and the given apps."""
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
        connection["credentials"].update(minsize=1, maxsize=pool_size, connection_class=PooledConnection)
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


async def open_db(database_url: str, *, apps: Mapping[str, Any], pool_size: int = 20) -> None:
    # The global fallback makes the ORM visible to every task of the process
    # (uvicorn serves requests in tasks that do not inherit the lifespan's context).
    await Tortoise.init(
        config=tortoise_config(database_url, apps=apps, pool_size=pool_size), _enable_global_fallback=True
    )


async def close_db() -> None:
    await Tortoise.close_connections()
