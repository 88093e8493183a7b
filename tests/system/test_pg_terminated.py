"""Issue 20, point 3: PostgreSQL terminates the service's connections under load.

The app in-process with its worker, under concurrent reads, deposits, orders and
redemptions (whose orders queue e-mails and PDFs), while an admin session calls
`pg_terminate_backend` on every connection of the test's own database but its own.
Then: the requests that failed are few (at most one per terminated connection), each
answered SERVICE_UNAVAILABLE (never an internal error), none started well after the
kill; the next requests of every kind succeed, every job finishes, and the money holds
(balance == ledger == the client's model once unsettled writes are retried with their keys).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from models import OutboxMessage, OutboxStatus, VoucherOrder
from server import create_app
from settings import Settings
from tests.support.api import Api, loopback_client
from tests.support.factories import DEPOSIT, ORDER_CREATE, codes_of, line, partner
from tests.support.running import running_worker, wait_for

pytestmark = pytest.mark.postgres

POOL = 4  # few connections: each terminated one fails at most the request on it
LOOPS = 6
BALANCE = """{ viewer { account { balance { amount } } } }"""
REDEEM = """mutation R($input: VoucherRedeemInput!) { voucherRedeem(input: $input) {
  certificateRequest { id } errors { code message } } }"""
SETTLE_SECONDS = 1.0  # a request started this long after the kill must not fail
# No request may take longer: the pool (5 s) and statement (10 s) timeouts bound every wait.
REQUEST_TIMEOUT = 20.0


@dataclass
class Run:
    api: Api
    token: str
    codes: list[str]
    model: Decimal
    requests: list[tuple[float, str, str]] = field(default_factory=list)  # (started, kind, outcome)
    unsettled: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # writes to send again
    stop: bool = False

    async def call(self, kind: str, document: str, variables: dict[str, Any], client: Api) -> tuple[str, Any]:
        started = time.monotonic()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                response = await client.http.post(
                    "/graphql",
                    json={"query": document, "variables": variables},
                    headers={"Authorization": f"Bearer {self.token}"},
                )
        except TimeoutError:
            outcome, data = "timeout", None
        else:
            outcome, data = classify(response)
        self.requests.append((started, kind, outcome))
        return outcome, data

    async def write(self, kind: str, document: str, variables: dict[str, Any], client: Api) -> Any:
        outcome, data = await self.call(kind, document, variables, client)
        if outcome == "unavailable":
            self.unsettled.append((document, variables))
            return None
        return data if outcome == "ok" else None

    async def one_round(self, client: Api) -> None:
        await self.call("read", BALANCE, {}, client)
        key = secrets.token_hex(8)
        deposit = {"input": {"amount": "200.00", "cardToken": "tok_visa", "idempotencyKey": key}}
        if await self.write("deposit", DEPOSIT, deposit, client) is not None:
            self.model += Decimal("200.00")
        order = {
            "input": {"lines": [line(quantity=1)], "paymentMethod": "ACCOUNT_BALANCE", "idempotencyKey": key + "o"}
        }
        placed = await self.write("order", ORDER_CREATE, order, client)
        if placed is not None:
            self.model -= Decimal(placed["order"]["total"]["amount"])
        if self.codes:
            code = self.codes.pop()
            await self.call("redeem", REDEEM, {"input": {"code": code, "commonName": "www.example.com"}}, client)

    async def loop(self) -> None:
        client = self.api.client()  # an address of its own: redemptions' rate limit counts per client
        async with client.http:
            while not self.stop:
                await self.one_round(client)
                # In-process requests that fail without any I/O never suspend: let the test's own task run.
                await asyncio.sleep(0)


def classify(response: httpx.Response) -> tuple[str, Any]:
    """ok, unavailable (SERVICE_UNAVAILABLE in any of its three shapes), or what else it was."""
    if response.status_code == 503:
        return ("unavailable" if "SERVICE_UNAVAILABLE" in response.text else f"status:{response.status_code}"), None
    if response.status_code != 200:
        return f"status:{response.status_code}", None
    body = response.json()
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code", "")
        return ("unavailable" if code == "SERVICE_UNAVAILABLE" else f"error:{code}:{error.get('message')}"), None
    (payload,) = body["data"].values()
    errors = payload.get("errors") if isinstance(payload, dict) else None
    if errors:
        code = errors[0]["code"]
        return ("unavailable" if code == "SERVICE_UNAVAILABLE" else f"refused:{code}"), None
    return "ok", payload


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[tuple[Api, Settings]]:
    own = replace(settings, db_pool_size=POOL)
    app = create_app(own)
    async with app.router.lifespan_context(app), running_worker(own):
        transport = httpx.ASGITransport(app=app, client=loopback_client())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield Api(http), own


async def admin_balance(account_id: int) -> int:
    from models import Account

    return int((await Account.get(id=account_id)).balance)


async def terminate_service_connections(admin: asyncpg.Connection) -> int:
    """Wait (at most 5 s) for a service statement in flight, then end every service connection: how many."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        active = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND state = 'active'"
        )
        if active:
            break
        await asyncio.sleep(0.005)
    # Only this test's own database, never the admin session itself.
    terminated: int = await admin.fetchval(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
    )
    return terminated


async def test_terminated_connections_fail_only_their_requests_and_the_next_ones_succeed(
    service: tuple[Api, Settings], record_property: Callable[[str, object], None]
) -> None:
    api, settings = service
    first_row = await OutboxMessage.all().order_by("-id").first().values_list("id", flat=True) or 0
    p = await partner(api, balance="10000.00")
    codes = await codes_of(api, p, line("BASIC_OV", 20))
    spare = codes.pop()
    account = p["account"]
    model = Decimal(await admin_balance(account.id)) / 100
    run = Run(api, p["token"], codes, model)
    admin = await asyncpg.connect(
        settings.database_url.replace("postgres://", "postgresql://", 1),
        server_settings={"application_name": "pg-terminated-test"},
    )
    try:
        loops = [asyncio.create_task(run.loop()) for _ in range(LOOPS)]
        await asyncio.sleep(1.5)
        killed_at = time.monotonic()
        terminated = await terminate_service_connections(admin)
        await asyncio.sleep(2.5)
        run.stop = True
        await asyncio.wait_for(asyncio.gather(*loops), timeout=90)  # a round is four requests, each bounded
        # the next requests, one of each kind, all succeed
        after = len(run.requests)
        async with api.client().http as http:
            client = Api(http)
            run.codes = [spare]
            await run.one_round(client)
        next_ones = run.requests[after:]
        # writes that answered SERVICE_UNAVAILABLE, sent again with their keys: each settles once
        for document, variables in run.unsettled:
            async with api.client().http as http:
                outcome, data = await run.call("retry", document, variables, Api(http))
            assert outcome == "ok", outcome
            if "amount" in variables["input"]:
                run.model += Decimal("200.00")
            else:
                run.model -= Decimal(data["order"]["total"]["amount"])

        async def jobs_done() -> bool:
            left = await OutboxMessage.filter(id__gt=first_row).exclude(status=OutboxStatus.DONE).count()
            pending_pdfs = await VoucherOrder.filter(account_id=account.id).exclude(pdf_status="READY").count()
            return left == 0 and pending_pdfs == 0

        await wait_for(jobs_done, within=30, interval=0.2)
        ledger = await admin.fetchval(
            "SELECT coalesce(sum(amount), 0) FROM ledger_entry WHERE account_id = $1", account.id
        )
        balance = await admin.fetchval("SELECT balance FROM account WHERE id = $1", account.id)
    finally:
        await admin.close()

    outcomes = Counter(outcome for _, _, outcome in run.requests)
    failed = [
        (round(started - killed_at, 2), kind, outcome) for started, kind, outcome in run.requests if outcome != "ok"
    ]
    record_property("figures", [f"terminated {terminated}", f"outcomes {dict(outcomes)}", f"failed {failed}"])
    assert terminated > 0  # the kill hit the service's connections
    assert {outcome for _, _, outcome in failed} <= {"unavailable"}, failed
    assert len(failed) <= terminated, failed
    assert all(at < SETTLE_SECONDS for at, _, _ in failed), failed
    assert len(next_ones) >= 3
    assert [outcome for _, _, outcome in next_ones] == ["ok"] * len(next_ones)
    assert balance == ledger
    assert Decimal(balance) / 100 == run.model
