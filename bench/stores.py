"""The loopback PostgreSQL and Redis the bench runs against: throwaway databases, key clean-up, a statement counter.

Counting statements on the wire (StatementCounter) is independent of the ORM and of
logging: every statement a client runs reaches PostgreSQL as a simple-protocol Query ('Q')
or an extended-protocol Execute ('E') message, BEGIN/COMMIT included (Parse/Describe of a
statement prepared for the first time are not executions). The query asyncpg's pool sends
when a connection goes back to the pool (`SELECT pg_advisory_unlock_all(); ... RESET ALL`)
is counted apart, as `resets`. pg_stat_statements is not installed here, and
pg_stat_database flushes its counters seconds late: neither gives a per-request figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import redis.asyncio as aioredis

from infra import database
from models import ORM_APPS

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def server_url() -> str:
    """DATABASE_URL's PostgreSQL server; loopback only."""
    url = (os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL).replace("postgresql://", "postgres://", 1)
    parts = urlsplit(url)
    if parts.scheme != "postgres":
        raise SystemExit("bench: DATABASE_URL must name a PostgreSQL server (postgres://...)")
    if parts.hostname not in LOOPBACK:
        raise SystemExit(f"bench: runs against a loopback server only, not {parts.hostname!r}")
    return url


def redis_url() -> str:
    """REDIS_URL; loopback only."""
    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    if urlsplit(url).hostname not in LOOPBACK:
        raise SystemExit(f"bench: runs against a loopback Redis only, not {urlsplit(url).hostname!r}")
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


@contextlib.asynccontextmanager
async def throwaway_database(server: str, name: str, *, migrate: bool = True) -> AsyncIterator[str]:
    """A database of its own on `server`, migrated, dropped on the way out whatever happened; its URL."""
    url = with_database(server, name)
    await admin_execute(server, f'CREATE DATABASE "{name}"')
    try:
        if migrate:
            await database.migrate(url, apps=ORM_APPS)
        yield url
    finally:
        await admin_execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def drop_keys(url: str, part: str) -> int:
    """Every Redis key whose name holds `part` (a run's queues, rate-limit counters, caches, jobs)."""
    client = aioredis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"*{part}*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
        return len(keys)
    finally:
        await client.aclose()


SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
QUERY, EXECUTE, TERMINATE = ord("Q"), ord("E"), ord("X")
POOL_RESET = b"SELECT pg_advisory_unlock_all()"


class StatementCounter:
    """A TCP proxy to PostgreSQL on a free loopback port, counting the statements and pool resets sent through it.

    It answers an SSLRequest itself with 'N' (no TLS), so the client speaks plain protocol
    through it. Its cost (one more hop a round trip) falls on the bench process, not on the
    server measured.
    """

    def __init__(self, upstream_host: str = "127.0.0.1", upstream_port: int = 5432) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.statements = 0
        self.resets = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> StatementCounter:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url(self, database_url: str) -> str:
        """`database_url` with its host and port replaced by the proxy's."""
        parts = urlsplit(database_url)
        return parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{self.port}").geturl()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_writer: asyncio.StreamWriter | None = None
        try:
            startup = await self._startup(reader, writer)
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            up_writer.write(startup)
            await asyncio.gather(self._client_to_server(reader, up_writer), self._pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    w.close()
            self._tasks.discard(task)

    @staticmethod
    async def _startup(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        """The untyped startup message, after declining TLS and GSS encryption ourselves."""
        while True:
            head = await reader.readexactly(8)
            length, code = struct.unpack("!ii", head)
            body = await reader.readexactly(length - 8)
            if code in (SSL_REQUEST, GSSENC_REQUEST):
                writer.write(b"N")
                await writer.drain()
                continue
            return head + body

    async def _client_to_server(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Typed messages: one type byte, then a length that counts itself but not the type byte.
        while True:
            head = await reader.readexactly(5)
            kind = head[0]
            (length,) = struct.unpack("!i", head[1:])
            body = await reader.readexactly(length - 4)
            if kind == QUERY and body.startswith(POOL_RESET):
                self.resets += 1
            elif kind in (QUERY, EXECUTE):
                self.statements += 1
            writer.write(head + body)
            await writer.drain()
            if kind == TERMINATE:
                return

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()
