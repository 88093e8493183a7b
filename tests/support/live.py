"""Helpers for live-update tests: a real socket in front of the app, and subscriptions read as a SPA would."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import uvicorn
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport

from tests.support.running import free_port

ORDER_FIELDS = """id number status
  pdf { status }
  statusCounts { validUnused validUsed expired cancelled total }
  history(first: 1) { edges { node { kind } } }"""
ORDER_UPDATED = f"subscription O($id: ID!) {{ voucherOrderUpdated(id: $id) {{ {ORDER_FIELDS} }} }}"
ACCOUNT_UPDATED = """subscription { accountUpdated { id balance { amount }
  financeSettings { lowBalanceThreshold { amount } } } }"""


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """uvicorn on a free loopback port in this event loop, in front of an app whose lifespan is running."""
    port = free_port()
    # websockets-sansio: uvicorn's default WebSocket implementation is websockets' deprecated legacy API.
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_level="warning", ws="websockets-sansio"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    # Polled: uvicorn offers no start-up event, only its `started` flag.
    while not server.started:
        if task.done():
            task.result()  # its exception, if it had one
            raise RuntimeError("uvicorn stopped at start-up")
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        await asyncio.sleep(0.02)
    try:
        yield f"ws://127.0.0.1:{port}/graphql"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)


def transport(url: str, token: str | None) -> WebsocketsTransport:
    """graphql-transport-ws only, the token in connection_init: what Apollo's GraphQLWsLink sends."""
    return WebsocketsTransport(
        url=url,
        init_payload={"authorization": f"Bearer {token}"} if token else {},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        ping_interval=None,
    )


class Stream:
    """One subscription's messages, gathered in the background; each carries when it arrived."""

    def __init__(self, session: Any, document: str, variables: dict[str, Any] | None = None) -> None:
        self.messages: asyncio.Queue[tuple[float, Any]] = asyncio.Queue()
        self.seen: list[Any] = []
        request = GraphQLRequest(document, variable_values=variables or {})
        self.task = asyncio.create_task(self._pump(session, request))

    async def _pump(self, session: Any, request: GraphQLRequest) -> None:
        try:
            async for data in session.subscribe(request):
                await self.messages.put((time.monotonic(), data))
        except Exception as exc:  # the test reads it as a message
            await self.messages.put((time.monotonic(), exc))

    async def next(self, within: float = 5.0) -> Any:
        _, data = await asyncio.wait_for(self.messages.get(), timeout=within)
        self.seen.append(data)
        if isinstance(data, Exception):
            raise data
        return data

    async def until(self, predicate: Callable[[Any], bool], *, within: float = 5.0) -> tuple[float, Any]:
        """The first message that satisfies `predicate`, and when it arrived; fails after `within` seconds."""
        deadline = time.monotonic() + within
        while True:
            left = deadline - time.monotonic()
            try:
                arrived, data = await asyncio.wait_for(self.messages.get(), timeout=max(left, 0.001))
            except TimeoutError:
                raise AssertionError(f"no matching message within {within}s; seen: {self.seen}") from None
            self.seen.append(data)
            if isinstance(data, Exception):
                raise data
            if predicate(data):
                return arrived, data

    async def quiet(self, seconds: float) -> list[Any]:
        """What arrived during `seconds` (nothing, when the test expects silence)."""
        await asyncio.sleep(seconds)
        arrived = []
        while not self.messages.empty():
            arrived.append(self.messages.get_nowait()[1])
        self.seen.extend(arrived)
        return arrived

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


def order_of(data: Any) -> dict[str, Any]:
    return dict(data["voucherOrderUpdated"])


def latest_event(order: dict[str, Any]) -> str | None:
    edges = order["history"]["edges"]
    return str(edges[0]["node"]["kind"]) if edges else None


@contextlib.asynccontextmanager
async def session_for(url: str, token: str | None) -> AsyncIterator[Any]:
    client = Client(transport=transport(url, token))
    async with client as session:
        yield session
