"""W1's client side: the dashboard document, sign-in, the HTTP load of a round, the polled rounds, the profile."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import statistics
import time
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

from bench import profilers, seed
from bench.processes import ServerProcess
from bench.stores import StatementCounter

DEPOSIT_AMOUNT = Decimal("10.00")  # the smallest deposit the API takes

# The dashboard of DESIGN.md without the per-order history and downloads: orders, lines,
# status counts and the first vouchers of each, and the balance.
DOCUMENT = """query Dashboard($orders: Int!, $vouchers: Int!) {
  viewer { account { balance { amount currencyCode } } }
  voucherOrders(first: $orders) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node {
      id number customerName status paymentMethod createdAt total { amount currencyCode }
      lines { productName quantity validityYears fqdns wildcards unitPrice { amount currencyCode } }
      statusCounts { validUnused validUsed expired cancelled total }
      vouchers(first: $vouchers) {
        totalCount pageInfo { hasNextPage endCursor }
        edges { node { id code status expiresAt } }
      }
    } }
  }
}"""

DOCUMENT_ID = f"sha256:{hashlib.sha256(DOCUMENT.encode()).hexdigest()}"

SIGN_IN = """mutation SignIn($input: SignInInput!) { signIn(input: $input) { token errors { code message } } }"""
DEPOSIT = """mutation Deposit($input: FundsDepositInput!) {
  fundsDeposit(input: $input) { account { balance { amount } } errors { code message } } }"""


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def _graphql(url: str, query: str, variables: dict[str, Any], token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"{url}/graphql", json={"query": query, "variables": variables}, headers=headers)
    response.raise_for_status()
    return response.json()


async def sign_in(url: str, email: str) -> str:
    result = await _graphql(url, SIGN_IN, {"input": {"email": email, "password": seed.PASSWORD}})
    payload = result["data"]["signIn"]
    if payload["errors"]:
        raise RuntimeError(f"sign-in failed: {payload['errors']}")
    return str(payload["token"])


def _normalised(value: Any, key: str = "") -> Any:
    # Datetimes compared as instants: PostgreSQL and Python may write the same one differently.
    if isinstance(value, dict):
        return {k: _normalised(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalised(v) for v in value]
    if key.endswith("At") and isinstance(value, str):
        return datetime.fromisoformat(value)
    return value


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(_normalised(a) == _normalised(b))


def shape(data: dict[str, Any]) -> str:
    """What an answer holds: orders, vouchers and values (a rough count of the fields resolved)."""
    edges = data["voucherOrders"]["edges"]
    vouchers = sum(len(e["node"]["vouchers"]["edges"]) for e in edges)

    def values(node: Any) -> int:
        if isinstance(node, dict):
            return sum(1 + values(v) for v in node.values())
        if isinstance(node, list):
            return sum(values(v) for v in node)
        return 0

    return f"{len(edges)} orders, {vouchers} vouchers, {values(data):,} fields"


class Side:
    """One server under load: the same dashboard request, `concurrency` at a time over keep-alive connections."""

    def __init__(
        self,
        server: ServerProcess,
        proxy: StatementCounter,
        token: str,
        variables: dict[str, int],
        concurrency: int = 1,
        *,
        cold: bool = False,
        by_id: bool = False,
    ) -> None:
        self.server, self.proxy, self.token, self.concurrency = server, proxy, token, concurrency
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self.client = httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits)
        self.variables = variables
        # by_id: the stored document's id instead of its text (a trusted document: docs/trusted-documents.md).
        self.document: dict[str, str] = {"documentId": DOCUMENT_ID} if by_id else {"query": DOCUMENT}
        self.body = json.dumps({**self.document, "variables": variables}).encode()
        # cold: every request differs by an unused variable, so the server's response cache
        # (keyed on the variables) never answers it and each request does the whole work.
        # The prefix keeps the nonces of every Side apart: the servers of a run share one
        # Redis, and a later Side counting from 1 again was answered from the earlier's entries.
        self.cold = cold
        self.sent = 0
        self.nonce_prefix = secrets.token_hex(6)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.rates: list[float] = []
        self.statements: list[float] = []
        self.resets: list[float] = []

    async def post(self, *, cold: bool | None = None) -> bytes:
        body = self.body
        if self.cold if cold is None else cold:
            self.sent += 1
            variables = {**self.variables, "nonce": f"{self.nonce_prefix}-{self.sent}"}
            body = json.dumps({**self.document, "variables": variables}).encode()
        response = await self.client.post("/graphql", content=body, headers=self.headers)
        if response.status_code != 200 or b'"errors"' in response.content[:200]:
            raise RuntimeError(f"{self.server.name}: {response.status_code} {response.text[:500]}")
        return response.content

    async def answer(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(await self.post())["data"]
        return data

    async def round(self, requests: int, *, cold: bool | None = None) -> float:
        """Send `requests` requests; the server CPU milliseconds a request (rate and statements kept aside)."""
        remaining = requests

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await self.post(cold=cold)

        cpu, statements, resets = self.server.cpu_seconds(), self.proxy.statements, self.proxy.resets
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        elapsed = time.perf_counter() - started
        cpu = self.server.cpu_seconds() - cpu
        self.rates.append(requests / elapsed)
        self.statements.append((self.proxy.statements - statements) / requests)
        self.resets.append((self.proxy.resets - resets) / requests)
        return cpu * 1000 / requests

    async def close(self) -> None:
        await self.client.aclose()


class Polled:
    """Server CPU of the dashboard asked again with nothing changed, against the same dashboard computed cold.

    Each cold round also checks freshness: after a deposit (a change), the next polled
    answer must show the new balance, never the cached one.
    """

    def __init__(self, side: Side) -> None:
        self.side = side
        self.cold_checked = 0
        self.cold_fresh = True

    async def repeated(self, n: int) -> float:
        await self.side.post(cold=False)  # stored once; from here on nothing changes
        return await self.side.round(n, cold=False)

    async def cold(self, n: int) -> float:
        deposit = {"input": {"amount": str(DEPOSIT_AMOUNT), "cardToken": "tok_visa"}}
        result = await _graphql(self.side.server.url, DEPOSIT, deposit, token=self.side.token)
        payload = result["data"]["fundsDeposit"]
        if payload["errors"]:
            raise RuntimeError(f"deposit failed: {payload['errors']}")
        shown = json.loads(await self.side.post(cold=False))["data"]["viewer"]["account"]["balance"]["amount"]
        self.cold_checked += 1
        self.cold_fresh = self.cold_fresh and shown == payload["account"]["balance"]["amount"]
        return await self.side.round(n, cold=True)


async def profile(
    server: ServerProcess, proxy: StatementCounter, token: str, variables: dict[str, int], seconds: float
) -> None:
    """py-spy on the A server while it answers cold dashboards, 4 at a time, for `seconds`."""
    recording = profilers.record(server.python_pid(), "bench-w1-profile.txt", seconds)
    if recording is None:
        return
    # Cold, as the measured rounds: a repeated request would profile the response cache. By id:
    # the stored-document path (issue 25).
    side = Side(server, proxy, token, variables, 4, cold=True, by_id=True)
    try:
        while recording.running():
            await side.round(8)
    finally:
        await side.close()
        recording.stop()
    recording.report(f"W1 profile of the A server ({seconds:.0f} s under load)")
