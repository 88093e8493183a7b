"""A loopback proxy in front of PostgreSQL that counts the statements a server process sends.

Counting on the wire is independent of the ORM and of logging: every statement a
client runs reaches PostgreSQL as a simple-protocol Query ('Q') or an
extended-protocol Execute ('E') message, so their sum is the number of statements
run, BEGIN/COMMIT included. (Parse/Describe of a statement prepared for the first
time are not executions and are not counted.) The query asyncpg's pool sends when a
connection goes back to the pool (`SELECT pg_advisory_unlock_all(); ... RESET ALL`)
is counted apart, as `resets`: the application did not ask for it, but it is one
more round trip per connection use. pg_stat_statements is not installed
here, and pg_stat_database flushes its counters up to seconds late, so neither can
give a per-request figure.

The proxy answers an SSLRequest itself with 'N' (no TLS), so that the client then
speaks plain protocol through it; it is loopback only. Its cost (one extra hop per
round trip) falls on the benchmark process, not on the server being measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
QUERY, EXECUTE = ord("Q"), ord("E")
POOL_RESET = b"SELECT pg_advisory_unlock_all()"


class StatementCounter:
    """A TCP proxy to PostgreSQL on a free loopback port, counting the statements and pool resets sent through it."""

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
            if startup is None:
                return
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

    async def _startup(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes | None:
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
            if kind == ord("X"):  # Terminate
                await writer.drain()
                return
            await writer.drain()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()
