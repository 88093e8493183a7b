"""What the client-error tests share: a request through HTTP whose answer must hold no internal error.

`no_unexpected_errors` is an autouse fixture for the modules that import it: nothing the
server logs at ERROR while a test runs (a client's mistake is never an unexpected error).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.api import Api

GRAPHQL_RESPONSE = {"Accept": "application/graphql-response+json"}
OURS = ("vouchsafe", "strawberry", "uvicorn", "starlette", "graphql")


@pytest.fixture(autouse=True)
def no_unexpected_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.ERROR)
    yield
    # What the server logs about a request; asyncio's notes on a Redis connection the app's
    # shutdown cut are about the app's lifetime, not about the request.
    unexpected = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith(OURS)]
    assert not unexpected, unexpected


def no_internal_error(result: dict[str, Any]) -> None:
    codes = [(e.get("extensions") or {}).get("code") for e in result.get("errors") or []]
    assert "INTERNAL_SERVER_ERROR" not in codes, result


async def post(api: Api, payload: dict[str, Any], token: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {**GRAPHQL_RESPONSE, **({"Authorization": f"Bearer {token}"} if token else {})}
    response = await api.http.post("/graphql", json=payload, headers=headers)
    body = response.json()
    no_internal_error(body)
    return response.status_code, body
