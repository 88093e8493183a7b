"""The GraphQL client the tests talk to the app with, as a SPA would."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx

from services.events import EventBus, KeptEvents
from settings import Settings


def loopback_client() -> tuple[str, int]:
    """A distinct loopback address per client, so per-client rate limits never leak between tests."""
    return (f"127.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 1}", 50000)


class Api:
    """A GraphQL client over the ASGI app, as a SPA would talk to it."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def __call__(self, query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    @property
    def app(self) -> Any:
        """The ASGI app this client talks to."""
        return self.http._transport.app  # type: ignore[attr-defined]  # noqa: SLF001  # httpx keeps it on the transport

    @property
    def bus(self) -> EventBus:
        """The app's event bus: a change a test makes through the services is announced as the app's own are.

        A server in another process has none here: what this process changes is announced to no one.
        """
        if not isinstance(self.http._transport, httpx.ASGITransport):  # noqa: SLF001  # httpx keeps it there
            return KeptEvents()
        bus: EventBus = self.app.state.resources.bus
        return bus

    def client(self) -> Api:
        """Another client (another address) on the same app."""
        transport = httpx.ASGITransport(app=self.app, client=loopback_client())
        return Api(httpx.AsyncClient(transport=transport, base_url="http://testserver"))


@contextlib.asynccontextmanager
async def without_worker(settings: Settings) -> AsyncIterator[Api]:
    """The app with no worker of its own, and a client: the test runs its jobs (tests.support.running.run_jobs)."""
    from server import create_app

    app = create_app(settings, worker=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=loopback_client())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield Api(http)
