"""F12 (issue 20): two API processes and two workers ride out an operator's bad day.

Real `vouchsafe serve` and `vouchsafe worker` processes on a PostgreSQL database and a
redis-server of the test's own, under a steady mix of deposits, orders, reveals,
redemptions (pairs racing for one code) and order cancels (racing a redemption), while
the faults come one after another: a worker killed (kill -9), an API process killed and
started again, Redis killed and started again empty, Redis frozen (SIGSTOP) then woken,
and every service connection terminated by PostgreSQL (pg_terminate_backend). Then the
invariants: balance == ledger == the clients' model, a voucher used at most once,
cancel and redemption never both won, every PDF ready and every e-mail written within
60 s of Redis answering again, `vouchsafe ledger verify`, no request to a live instance
over its timeout, no unexpected traceback. Its figures are shown in pytest's terminal summary.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from infra import database
from models import ORM_APPS
from services import staff
from services.events import KeptEvents
from settings import Settings
from tests.support.factories import DEPOSIT, ENABLE_BALANCE, ORDER_CREATE, PASSWORD, SIGN_IN, SIGN_UP, unique_email
from tests.support.fault_cluster import Cluster, outage_traceback_problems
from tests.support.redis import OwnRedis
from tests.support.stores import admin_execute, with_database

pytestmark = pytest.mark.postgres

REQUEST_TIMEOUT = 10.0  # no request to a live instance may take longer (Redis 1 s, statement 5 s, pool 3 s)
RECOVERY_LIMIT = 60.0
PARTNERS = 4
LOOPS = 6
REVEAL = """mutation R($id: ID!) { voucherCodesReveal(input: {orderId: $id}) { codes { code } errors { code } } }"""
REDEEM = """mutation R($input: VoucherRedeemInput!) { voucherRedeem(input: $input) {
  certificateRequest { id } errors { code message } } }"""
CANCEL = """mutation C($id: ID!) { voucherOrderCancel(input: {orderId: $id}) { errors { code message } } }"""
BALANCE = """{ viewer { account { balance { amount } } } }"""
RETRYABLE = {"unavailable", "down", "timeout", "refused:IDEMPOTENCY_KEY_IN_PROGRESS"}


@dataclass
class Partner:
    token: str
    account_id: int
    client: str  # a loopback address of its own: rate limits count per client
    model: Decimal = Decimal(0)  # the balance the client's confirmed answers add up to


@dataclass
class Load:
    cluster: Cluster
    partners: list[Partner]
    outcomes: Counter[str] = field(default_factory=Counter)
    over_timeout: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    codes: list[tuple[str, str]] = field(default_factory=list)  # (order id, code), revealed
    orders: dict[str, tuple[int, Decimal]] = field(default_factory=dict)  # order id -> (partner, total)
    redeemed: Counter[str] = field(default_factory=Counter)  # code -> successful redemptions
    cancelled_and_redeemed: list[str] = field(default_factory=list)
    unknown: int = 0
    unknown_deposits: list[tuple[Partner, str]] = field(default_factory=list)
    stop: bool = False

    async def call(self, n: int, document: str, variables: dict[str, Any], partner: Partner) -> tuple[str, Any]:
        """One request to instance n; its outcome (ok, refused:CODE, unavailable, down, timeout) and payload."""
        port = self.cluster.api_port(n)
        transport = httpx.AsyncHTTPTransport(local_address=partner.client)
        started = time.monotonic()
        try:
            async with httpx.AsyncClient(transport=transport, timeout=REQUEST_TIMEOUT) as http:
                response = await http.post(
                    f"http://127.0.0.1:{port}/graphql",
                    json={"query": document, "variables": variables},
                    headers={"Authorization": f"Bearer {partner.token}"},
                )
        except httpx.TimeoutException:
            outcome, payload = "timeout", None
        except httpx.TransportError:
            outcome, payload = "down", None
        else:
            outcome, payload = classify(response)
        ended = time.monotonic()
        if outcome in ("down", "timeout") and self.cluster.api_live(n, started, ended):
            self.over_timeout.append(
                f"{outcome} on live instance {n % 2} after {ended - started:.1f}s: {document[:40]!r}"
            )
        if outcome.startswith(("error:", "status:")):
            self.failures.append(f"{outcome}: {document[:40]!r} -> {payload}")
        self.outcomes[outcome] += 1
        return outcome, payload

    async def settled(self, n: int, document: str, variables: dict[str, Any], partner: Partner) -> tuple[str, Any]:
        """A write retried (same idempotency key, either instance) until it is settled; "unknown" after 20 tries.

        A deposit whose request died after it claimed its key stays IN_PROGRESS for the
        key's lease (2 minutes, services.idempotency): the test settles those from the
        key's record at the end (`unknown_deposits`).
        """
        retried = False
        # Retried (20 at most): the cluster under fault is processes of their own.
        for attempt in range(20):
            outcome, payload = await self.call((n + attempt) % 2, document, variables, partner)
            if outcome not in RETRYABLE:
                if retried and outcome == "refused:ORDER_ALREADY_CANCELLED":
                    return "ok", payload  # an earlier attempt's cancel committed, its answer was lost
                return outcome, payload
            retried = True
            await asyncio.sleep(0.5)
        return "unknown", None

    async def deposit(self, n: int, partner: Partner) -> None:
        key = secrets.token_hex(8)
        variables = {"input": {"amount": "10.00", "cardToken": "tok_visa", "idempotencyKey": key}}
        outcome, _ = await self.settled(n, DEPOSIT, variables, partner)
        if outcome == "ok":
            partner.model += Decimal("10.00")
        elif outcome == "unknown":
            self.unknown_deposits.append((partner, key))

    async def order(self, n: int, partner: Partner) -> str | None:
        variables = {
            "input": {
                "lines": [{"productCode": "BASIC_OV", "quantity": 2, "validityYears": 1, "fqdns": 1, "wildcards": 0}],
                "paymentMethod": "ACCOUNT_BALANCE",
                "idempotencyKey": secrets.token_hex(8),
            }
        }
        outcome, payload = await self.settled(n, ORDER_CREATE, variables, partner)
        self.unknown += outcome == "unknown"
        if outcome != "ok":
            return None
        order = payload["order"]
        total = Decimal(order["total"]["amount"])
        partner.model -= total
        self.orders[order["id"]] = (self.partners.index(partner), total)
        return str(order["id"])

    async def reveal(self, n: int, partner: Partner, order_id: str) -> None:
        outcome, payload = await self.call(n, REVEAL, {"id": order_id}, partner)
        if outcome == "ok":
            self.codes += [(order_id, c["code"]) for c in payload["codes"]]

    async def redeem(self, n: int, partner: Partner, code: str) -> bool:
        variables = {"input": {"code": code, "commonName": f"www.{secrets.token_hex(3)}.example"}}
        outcome, _ = await self.call(n, REDEEM, variables, partner)
        if outcome == "ok":
            self.redeemed[code] += 1
        return outcome == "ok"

    async def race_for_a_code(self, n: int) -> None:
        if not self.codes:
            return
        _, code = self.codes.pop(secrets.randbelow(len(self.codes)))
        a, b = secrets.SystemRandom().sample(self.partners, 2)
        await asyncio.gather(self.redeem(n, a, code), self.redeem(n + 1, b, code))

    async def cancel_racing_a_redemption(self, n: int, partner: Partner) -> None:
        mine = [(o, c) for o, c in self.codes if self.orders.get(o, (-1, 0))[0] == self.partners.index(partner)]
        if not mine:
            return
        order_id, code = mine[0]
        self.codes = [(o, c) for o, c in self.codes if o != order_id]
        other = self.partners[(self.partners.index(partner) + 1) % len(self.partners)]
        (cancelled, _), redeemed = await asyncio.gather(
            self.settled(n, CANCEL, {"id": order_id}, partner), self.redeem(n + 1, other, code)
        )
        self.unknown += cancelled == "unknown"
        if cancelled == "ok":
            partner.model += self.orders[order_id][1]
            if redeemed:
                self.cancelled_and_redeemed.append(order_id)

    async def loop(self, n: int) -> None:
        partner = self.partners[n % len(self.partners)]
        step = 0
        while not self.stop:
            kind = step % 6
            if kind in (0, 3):
                await self.deposit(n, partner)
            elif kind == 1:
                order_id = await self.order(n, partner)
                if order_id:
                    await self.reveal(n + 1, partner, order_id)
            elif kind in (2, 4):
                await self.race_for_a_code(n)
            else:
                await self.cancel_racing_a_redemption(n, partner)
            step += 1
            await asyncio.sleep(0.05)


def classify(response: httpx.Response) -> tuple[str, Any]:
    if response.status_code == 503:
        return "unavailable", None
    try:
        body = response.json()
    except ValueError:
        return f"status:{response.status_code}", response.text[:200]
    codes = [(e.get("extensions") or {}).get("code") for e in body.get("errors") or []]
    if "SERVICE_UNAVAILABLE" in codes:
        return "unavailable", None
    if codes or response.status_code != 200:
        return f"error:{codes or response.status_code}", body
    [payload] = body["data"].values()
    errors = [e["code"] for e in payload.get("errors") or []]
    if "SERVICE_UNAVAILABLE" in errors:
        return "unavailable", None
    return (f"refused:{errors[0]}" if errors else "ok"), payload


@pytest.fixture
async def own_settings(settings: Settings, database_url: str) -> AsyncIterator[Settings]:
    name = f"vouchsafe_f12_{secrets.token_hex(4)}"
    await admin_execute(f'CREATE DATABASE "{name}"')
    own = replace(settings, database_url=with_database(database_url, name), queue_name=f"{settings.queue_name}:f12")
    try:
        await database.migrate(own.database_url, apps=ORM_APPS)
        yield own
    finally:
        await admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def sign_up_partners(cluster: Cluster, settings: Settings) -> list[Partner]:
    partners = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{cluster.api_port(0)}", timeout=30) as http:

        async def gql(document: str, variables: dict[str, Any] | None = None, token: str | None = None) -> Any:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            answer = await http.post("/graphql", json={"query": document, "variables": variables}, headers=headers)
            body = answer.json()
            assert "errors" not in body, body
            [payload] = body["data"].values()
            assert not payload.get("errors"), payload
            return payload

        for n in range(PARTNERS):
            email = unique_email("f12")
            data = {"email": email, "password": PASSWORD, "accountName": f"F12 {n}", "locale": "en"}
            await gql(SIGN_UP, {"input": data})
            token = (await gql(SIGN_IN, {"input": {"email": email, "password": PASSWORD}}))["token"]
            await database.open_db(settings.database_url, apps=ORM_APPS, pool_size=2)
            try:
                from models import User

                user = await User.get(email=email)
                assert user.account_id is not None
                await staff.set_partner(account_id=user.account_id, enabled=True, bus=KeptEvents())
            finally:
                await database.close_db()
            await gql(ENABLE_BALANCE, token=token)
            await gql(DEPOSIT, {"input": {"amount": "50000.00", "cardToken": "tok_visa"}}, token=token)
            partners.append(Partner(token, user.account_id, f"127.0.{n + 10}.{secrets.randbelow(200) + 2}"))
            partners[-1].model = Decimal("50000.00")
    return partners


async def test_f12_two_apis_and_two_workers_ride_out_the_faults(
    own_settings: Settings,
    own_redis: OwnRedis,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    settings = replace(own_settings, redis_url=own_redis.url)
    admin_url = settings.database_url.replace("postgres://", "postgresql://", 1)
    cluster = Cluster(settings, own_redis, tmp_path)
    figures: dict[str, Any] = {}
    lines: list[str] = []
    record_property("figures", lines)  # shown in the terminal summary without -s, failing or not (tests/conftest.py)
    try:
        await cluster.start()
        partners = await sign_up_partners(cluster, settings)
        load = Load(cluster, partners)
        figures["requests by outcome"] = load.outcomes  # counted as they come
        admin = await asyncpg.connect(admin_url, server_settings={"application_name": "f12-admin"})
        try:
            loops = [asyncio.create_task(load.loop(n)) for n in range(LOOPS)]
            await cluster.faults(admin, figures)
            load.stop = True
            await asyncio.wait_for(asyncio.gather(*loops), timeout=120)
            drained_after = await cluster.drained(admin, within=RECOVERY_LIMIT)
            figures["drain after the load, s"] = round(drained_after, 1)
            checks = await cluster.invariants(admin)
            for partner, key in load.unknown_deposits:  # committed or not, by the key's own record
                status = await admin.fetchval(
                    "SELECT status FROM idempotency_record WHERE account_id = $1 AND key = $2",
                    partner.account_id,
                    key,
                )
                partner.model += Decimal("10.00") if status == "DONE" else 0
                figures.setdefault("deposits settled from their key's record", []).append(status)
        finally:
            await admin.close()
        verify = await asyncio.to_thread(
            subprocess.run,
            [*cluster.command, "ledger", "verify"],
            env=cluster.env(tmp_path / "cli"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        logs = cluster.logs()
    finally:
        cluster.stop()
        for name, value in figures.items():  # what was measured, also when a check failed
            lines.append(f"{name}: {dict(value.most_common()) if isinstance(value, Counter) else value}")

    balances = {row["id"]: Decimal(row["balance"]) / 100 for row in checks["balances"]}
    problems = outage_traceback_problems(logs)
    lines += [
        f"orders: {len(load.orders)}, codes redeemed: {sum(load.redeemed.values())}",
        f"outbox: {checks['outbox']}, e-mails written: {checks['mails']}",
        *(f"PROBLEM: {problem}" for problem in problems),
    ]
    print("\nF12 figures:\n  " + "\n  ".join(lines))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert not load.failures, (load.failures[:10], problems[:10])
    assert not load.over_timeout, load.over_timeout[:10]
    assert load.unknown == 0
    assert not problems, problems[:5]
    assert not load.cancelled_and_redeemed, load.cancelled_and_redeemed
    assert all(n <= 1 for n in load.redeemed.values())
    assert checks["double_use"] == []
    assert checks["cancelled_and_used"] == []
    assert checks["ledger_mismatch"] == []
    assert {p.account_id: p.model for p in partners} == {p.account_id: balances[p.account_id] for p in partners}
    assert checks["pdf_not_ready"] == [], checks["pdf_not_ready"]
    assert checks["missing_mails"] == [], checks["missing_mails"][:10]
    assert figures["recovery after Redis restarted empty, s"] <= RECOVERY_LIMIT
    assert figures["recovery after Redis woke, s"] <= RECOVERY_LIMIT
