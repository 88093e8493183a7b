"""Which exceptions mean "a dependency is down or slow", as opposed to a bug.

Redis and PostgreSQL fail in many shapes: a refused or reset socket, a timeout (Redis's
socket timeout, the pool's acquire timeout, PostgreSQL's statement_timeout), a
connection PostgreSQL terminated, a commit whose answer never came. Callers answer all
of them the same way: a retryable error with a code (SERVICE_UNAVAILABLE), never an
internal error; a retry with the same idempotency key finds a commit that did happen.
"""

from __future__ import annotations

import asyncpg
from redis import exceptions as redis_errors

# Seconds a client is told to wait before trying again: outages seen here last seconds.
RETRY_AFTER_SECONDS = 2

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,  # refused, reset, closed; BusyLoadingError after a restart
    redis_errors.TimeoutError,  # a frozen or overloaded Redis
    asyncpg.PostgresConnectionError,  # class 08: the connection failed or does not exist
    asyncpg.exceptions.OperatorInterventionError,  # class 57: terminated, shutting down, statement timeout
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections
    TimeoutError,  # pool acquire, connect, or an asyncio.timeout around a dependency
    ConnectionError,  # the OS's refused / reset (PostgreSQL restarting); Tortoise's DBConnectionError
)

# asyncpg's InterfaceError is also raised for programming mistakes; these messages are a lost connection.
_LOST_CONNECTION = ("connection is closed", "connection was closed", "released back to the pool")


# An idle pool connection PostgreSQL terminated has the server's FATAL error in hand (protocol
# state 2, consuming an error) until its socket's close is seen: the next statement on it fails so.
_TERMINATED_WHILE_IDLE = "another operation (2) is in progress"


def _one(exc: BaseException) -> bool:
    if isinstance(exc, _UNAVAILABLE):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        return any(text in str(exc) for text in _LOST_CONNECTION)
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        return _TERMINATED_WHILE_IDLE in str(exc)
    return False


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc`, or what it was raised from, says a dependency is unreachable or too slow."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if _one(current):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def describe(exc: BaseException) -> str:
    """Which dependency, for logs: never the message's details (they may hold a statement)."""
    module = type(exc).__module__
    if module.startswith("redis"):
        return f"Redis ({type(exc).__name__})"
    if module.startswith(("asyncpg", "tortoise")):
        return f"PostgreSQL ({type(exc).__name__})"
    return type(exc).__name__
