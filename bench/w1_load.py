"""W1's pieces: the dashboard document, its data, the HTTP load, the polled rounds and the profile."""

from __future__ import annotations

import asyncio
import json
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from bench import spy
from bench.pgcount import StatementCounter
from bench.processes import ServerProcess
from models import LedgerEntryKind, PaymentMethod, Role
from services import accounts, catalogue, codes, finance, staff
from services.actors import Actor
from services.catalogue import LineRequest
from services.ledger import post_entry
from services.orders import OrderRequest, place_order
from services.payments import SandboxGateway

Round = Callable[[], Awaitable[float]]

PUBLIC_URL = "http://127.0.0.1:8000"
PASSWORD = "correct horse battery"
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

SIGN_IN = """mutation SignIn($input: SignInInput!) { signIn(input: $input) { token errors { code message } } }"""
DEPOSIT = """mutation Deposit($input: FundsDepositInput!) {
  fundsDeposit(input: $input) { account { balance { amount } } errors { code message } } }"""


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def seed_partner(orders: int, per_order: int, code_key: bytes) -> str:
    """A partner (as tests/factories.py makes one) with `orders` orders of `per_order` vouchers; its e-mail."""
    email = f"bench-w1-{secrets.token_hex(5)}@example.com"
    user = await accounts.sign_up(
        email=email, password=PASSWORD, account_name="W1 Partner", locale="en", public_url=PUBLIC_URL
    )
    actor = Actor(user_id=user.id, account_id=user.account_id, role=Role.ADMIN)
    account_id = actor.require_account()
    await staff.set_partner(account_id=account_id, enabled=True)
    await finance.update_settings(actor=actor, bill_to_balance_enabled=True)
    half = per_order // 2
    lines = [
        LineRequest("BASIC_OV", half, validity_years=1, fqdns=1, wildcards=0),
        LineRequest("SECURE_SITE_OV", per_order - half, validity_years=2, fqdns=2, wildcards=0),
    ]
    cost = (await catalogue.quote(lines, currency="USD")).total
    async with in_transaction() as conn:
        await post_entry(conn, account_id=account_id, kind=LedgerEntryKind.DEPOSIT, amount=cost * orders)
    cipher, gateway = codes.CodeCipher(code_key), SandboxGateway()
    for i in range(orders):
        request = OrderRequest(
            lines=lines, customer_name=f"Customer {i + 1}", payment_method=PaymentMethod.ACCOUNT_BALANCE
        )
        await place_order(actor=actor, request=request, gateway=gateway, cipher=cipher, public_url=PUBLIC_URL)
    return email


async def quiet_outbox(conn: BaseDBAsyncClient) -> None:
    """Pending background work (order PDFs, e-mails) marked done: it is not this workload's subject,
    and a later workload's worker on the same database would otherwise render it."""
    await conn.execute_query(
        "UPDATE outbox_message SET status = 'DONE', done_at = now() WHERE status IN ('PENDING', 'ENQUEUED')"
    )


async def _graphql(url: str, query: str, variables: dict[str, Any], token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"{url}/graphql", json={"query": query, "variables": variables}, headers=headers)
    response.raise_for_status()
    return response.json()


async def sign_in(url: str, email: str) -> str:
    result = await _graphql(url, SIGN_IN, {"input": {"email": email, "password": PASSWORD}})
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
    ) -> None:
        self.server, self.proxy, self.token, self.concurrency = server, proxy, token, concurrency
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self.client = httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits)
        self.variables = variables
        self.body = json.dumps({"query": DOCUMENT, "variables": variables}).encode()
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
            body = json.dumps({"query": DOCUMENT, "variables": variables}).encode()
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


async def profile(servers: Any, token: str, size: dict[str, int], workdir: Path, seconds: float = 10.0) -> None:
    """py-spy on the A server while it answers dashboards for `seconds`; the summary is printed."""
    pids = servers.a.python_pids()
    recording = spy.record(pids[0] if pids else None, workdir / "w1-profile.txt", seconds)
    if recording is None:
        return
    variables = {"orders": size["orders"], "vouchers": size["vouchers"]}
    # Cold, as the measured rounds: a repeated request would profile the response cache.
    side = Side(servers.a, servers.proxies[0], token, variables, 4, cold=True)
    try:
        while recording.running():
            await side.round(8)
    finally:
        await side.close()
        recording.stop()
    recording.report(f"W1 profile of the A server ({seconds:.0f} s under load)")
