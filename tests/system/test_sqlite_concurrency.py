"""On the embedded default, the API and a worker write 200 times each to one SQLite file.

The API is a real `vouchsafe serve` with no configuration at all (SQLite in its data dir, the
in-process Redis stand-in and worker), written to over loopback HTTP with API keys: deposits,
purchases, cancels, codes reveals and finance-settings edits. The worker is this module run as
a second process (`python -m tests.system.test_sqlite_concurrency DIR`) on the same data dir: through
workers.tasks.run_outbox and the worker's own handlers it delivers 200 receipt e-mails queued
before the start (a claim and a mark each), as a `vouchsafe worker` would. Tortoise serialises
one process's statements on its one connection, so only a second process shows what WAL and
busy_timeout (infra.database) are for, and which transactions they cannot save: one that
reads before it writes gets `database is locked` at once when the other process holds or has
just released the write lock, whatever busy_timeout says. With Tortoise's
plain BEGIN, 4-12 of the API's 200 writes failed so (cancels, reveals, settings edits);
infra.sqlite_backend begins every transaction IMMEDIATE, and none fails.

Both sides start at a barrier file holding a start time, and each side's n-th write is due at
start + n * PACE: the writes of the two stay interleaved from the first to the last, on a
loaded machine too, without a busy loop.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from infra import clock, database
from infra.ratelimit import RateLimiter
from infra.redis import open_redis
from models import ORM_APPS, Account, ApiKeyChannel, OutboxMessage, OutboxStatus
from services import accounts, finance, outbox, pdf
from services.codes import CodeCipher
from services.events import KeptEvents
from services.money import to_minor
from services.payments import SandboxGateway
from settings import Settings, load_settings
from tests.support.documents import ORDER_CANCEL, REVEAL, THRESHOLD_UPDATE
from tests.support.factories import DEPOSIT, ORDER_CREATE, balance_partner, line
from tests.support.processes import ROOT, command, poll, process_env, stop
from tests.support.running import free_port
from tests.support.world import World, check
from workers import tasks

WRITES = 200
PARTNERS = 2
PACE = 0.025  # seconds between one side's writes: 200 take 5 s, each side as busy as the other
START_TIMEOUT = 30.0
RUN_TIMEOUT = 60.0  # every process and wait ends by itself within this, whatever happens
DRAIN_TIMEOUT = 20.0  # the server's worker has the receipts, confirmations and PDFs left (~1 s)
LOCKED = re.compile(r"database is locked|OperationalError")
FAILED_RESOLVER = re.compile(r"unexpected error in (\w+)")


class Backlog:
    """The separate worker's queue (a JobQueue): the relay hands it the jobs, the worker process gets their ids."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    async def enqueue(self, function: str, *args: Any, job_id: str) -> None:
        self.ids.append(int(args[0]))

    async def held(self, job_ids: list[str]) -> set[str]:
        return set(job_ids)


@dataclass(frozen=True)
class Seeded:
    tokens: list[str]  # one API key per partner
    expected: dict[int, int]  # account id -> balance, in the tokens' order
    jobs: list[int]  # the worker's outbox rows


def due(start: float, n: int) -> float:
    return max(0.0, start + n * PACE - time.time())


async def seed(settings: Settings) -> Seeded:
    await database.migrate(settings.database_url, apps=ORM_APPS)
    await database.open_db(settings.database_url, pool_size=2, apps=ORM_APPS)
    try:
        partners = [await balance_partner(funds=1_000_000) for _ in range(PARTNERS)]
        tokens = [
            (await accounts.api_key_create(actor=p, name="Shared", channel=ApiKeyChannel.API)).secret for p in partners
        ]
        for n in range(WRITES):  # each deposit queues its receipt e-mail: the worker's backlog
            await finance.deposit(
                actor=partners[n % PARTNERS],
                amount="10.00",
                card_token="tok_visa",
                idempotency_key=None,
                gateway=SandboxGateway(),
                public_url=settings.public_url,
                bus=KeptEvents(),
            )
        # Relayed before the server starts, and dated ahead: the server's relay re-offers an
        # ENQUEUED row its own queue does not hold only once outbox.REOFFER_AFTER has passed
        # since it was enqueued, so these jobs stay the worker process's alone.
        backlog = Backlog()
        await outbox.relay_pending(backlog)
        ahead = clock.now() + timedelta(days=1)
        await OutboxMessage.filter(id__in=backlog.ids).update(enqueued_at=ahead)
        balances = {a.id: a.balance for a in await Account.filter(id__in=[p.account_id for p in partners])}
        return Seeded(tokens, {p.require_account(): balances[p.require_account()] for p in partners}, backlog.ids)
    finally:
        await database.close_db()


def operation(n: int) -> str:
    """The n-th API write: per 20, two codes reveals and two settings edits, the rest deposits; every
    fourth 20 also a purchase and its cancel per partner (few: each costs the server a PDF render)."""
    block, step = divmod(n, 20)
    if block % 4 == 0 and step < 2:
        return "purchase"
    if block % 4 == 0 and 10 <= step < 12:
        return "cancel"
    return {2: "reveal", 3: "reveal", 4: "settings", 5: "settings"}.get(step, "deposit")


def api_writes(http: httpx.Client, seeded: Seeded, start: float) -> tuple[dict[int, int], list[str], list[float]]:
    """The API side's 200 mutations: the balances they make, the failures, and when they ran."""
    account_of = dict(zip(seeded.tokens, seeded.expected, strict=True))
    expected = dict(seeded.expected)
    placed: dict[str, tuple[str, int]] = {}  # token -> its last order (id, total)
    failures: list[str] = []
    time.sleep(due(start, 0))
    first = time.time()
    for n in range(WRITES):
        time.sleep(due(start, n))
        token, kind = seeded.tokens[n % PARTNERS], operation(n)
        order_id = placed.get(token, ("", 0))[0]
        query, variables = {
            "purchase": (ORDER_CREATE, {"input": {"lines": [line(quantity=1)], "paymentMethod": "ACCOUNT_BALANCE"}}),
            "reveal": (REVEAL, {"id": order_id}),
            "cancel": (ORDER_CANCEL, {"id": order_id}),
            "settings": (THRESHOLD_UPDATE, {"t": f"{100 + n}.00"}),
            "deposit": (DEPOSIT, {"input": {"amount": "25.00", "cardToken": "tok_visa"}}),
        }[kind]
        response = http.post(
            "/graphql", json={"query": query, "variables": variables}, headers={"Authorization": f"Bearer {token}"}
        )
        body: dict[str, Any] = response.json() if response.status_code == 200 else {"errors": response.text}
        payload = next(iter((body.get("data") or {}).values()), None) or {}
        if "errors" in body or payload.get("errors"):
            failures.append(f"write {n} ({kind}): {body}")
            continue
        account = account_of[token]
        if kind == "purchase":
            total = to_minor(payload["order"]["total"]["amount"], "USD", field="total")
            placed[token] = (payload["order"]["id"], total)
            expected[account] -= placed[token][1]
        elif kind == "cancel":
            expected[account] += placed[token][1]
        elif kind == "deposit":
            expected[account] += 2_500
    return expected, failures, [first, time.time()]


# --- the worker process ---------------------------------------------------------------------------


async def deliver(settings: Settings, jobs: list[int], start: float) -> dict[str, Any]:
    """Each job through the task arq would call, with the context the worker's start-up builds."""
    ctx = {
        "settings": settings,
        "handlers": tasks.handlers(settings, bus=KeptEvents()),
        "failure_hooks": pdf.pdf_failure_hooks(bus=KeptEvents()),
    }
    outcomes: list[str] = []
    await asyncio.sleep(due(start, 0))
    first = time.time()
    for n, message_id in enumerate(jobs):
        await asyncio.sleep(due(start, n))
        outcomes.append(await tasks.run_outbox({**ctx, "job_try": 1}, message_id))
    return {"outcomes": outcomes, "window": [first, time.time()]}


def worker_main(directory: Path) -> None:
    """Open the database as the worker does, wait at the barrier, deliver the jobs, report."""
    settings = load_settings()
    jobs = json.loads((directory / "jobs.json").read_text())
    go = directory / "go"
    with asyncio.Runner() as runner:
        runner.run(database.open_db(settings.database_url, pool_size=settings.db_pool_size, apps=ORM_APPS))
        try:
            (directory / "ready").touch()
            deadline = time.monotonic() + START_TIMEOUT
            # Polled: the start signal is a file the test process writes.
            while not go.exists():
                if time.monotonic() > deadline:
                    raise SystemExit("no start signal")
                time.sleep(0.005)
            coro = deliver(settings, jobs, float(go.read_text()))
            report = runner.run(asyncio.wait_for(coro, timeout=RUN_TIMEOUT))
        finally:
            runner.run(database.close_db())
    (directory / "worker.json").write_text(json.dumps(report))


# --- the test -------------------------------------------------------------------------------------


def start_process(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)


def drained(http: httpx.Client) -> bool:
    """No outbox row left waiting: the server's own worker has done what the API writes asked for."""
    text = http.get("/metrics").text
    return all(f'vouchsafe_outbox_messages{{status="{s}"}} 0.0' in text for s in ("PENDING", "ENQUEUED"))


async def invariants(settings: Settings, expected: dict[int, int]) -> dict[int, str]:
    """The money and voucher invariants and balances (tests.support.world.check); each outbox row's status."""
    await database.open_db(settings.database_url, pool_size=2, apps=ORM_APPS)
    redis = await open_redis(None)
    try:
        await check(World([], [], CodeCipher(settings.code_key), RateLimiter(redis), expected))
        return {int(row["id"]): str(row["status"]) for row in await OutboxMessage.all().values("id", "status")}
    finally:
        await redis.aclose()
        await database.close_db()


def assert_lock_free(logs: dict[str, Path]) -> None:
    for name, log in logs.items():
        text = log.read_text()
        failed = dict(Counter(FAILED_RESOLVER.findall(text)))
        assert not LOCKED.search(text), f"{name}: {len(LOCKED.findall(text))} lock errors, in {failed}:\n{text[-3000:]}"


def test_api_and_worker_processes_write_to_one_sqlite_file(tmp_path: Path) -> None:
    # given: the embedded default's data dir, two partners, and 200 e-mail jobs queued for the worker
    data_dir = tmp_path / "data"
    env = process_env(data_dir)  # the embedded default, for the server and the worker alike
    settings = load_settings(env)  # writes the keys now: two processes starting at once would race for them
    seeded = asyncio.run(seed(settings))
    assert len(seeded.jobs) == WRITES, seeded.jobs
    (tmp_path / "jobs.json").write_text(json.dumps(seeded.jobs))
    port = free_port()
    logs = {"serve": tmp_path / "serve.log", "worker": tmp_path / "worker.log"}
    server = start_process([*command(), "serve", "--host", "127.0.0.1", "--port", str(port)], env, logs["serve"])
    worker = start_process(
        [sys.executable, "-m", "tests.system.test_sqlite_concurrency", str(tmp_path)], env, logs["worker"]
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=15.0) as http:

            def both_ready() -> bool:
                for process, log in ((server, logs["serve"]), (worker, logs["worker"])):
                    assert process.poll() is None, log.read_text()
                try:
                    return http.get("/healthz").status_code == 200 and (tmp_path / "ready").exists()
                except httpx.TransportError:
                    return False

            poll(both_ready, timeout=START_TIMEOUT, what="server and worker ready")
            # when: both sides write at once, interleaved
            start = time.time() + 0.2
            (tmp_path / "go.part").write_text(repr(start))
            (tmp_path / "go.part").rename(tmp_path / "go")  # whole, never half written
            expected, failures, api_window = api_writes(http, seeded, start)
            worker_code = worker.wait(timeout=RUN_TIMEOUT)
            # then: no lock error in either process, and the worker did its part (before waiting on it)
            assert_lock_free(logs)
            assert failures == [], failures[:5]
            assert worker_code == 0, logs["worker"].read_text()[-3000:]
            poll(lambda: drained(http), timeout=DRAIN_TIMEOUT, what="the server's outbox drained")
        server_code = stop(server)
    finally:
        stop(server)
        stop(worker)
    # and none in the server's own worker's work after the writes; it ended by itself, cleanly
    assert_lock_free(logs)
    serve_log = logs["serve"].read_text()
    assert server_code in (0, -signal.SIGTERM), serve_log[-3000:]  # uvicorn re-raises the SIGTERM it stopped on
    assert "Application shutdown complete" in serve_log
    # and each side did its 200 writes, at the same time as the other
    report = json.loads((tmp_path / "worker.json").read_text())
    assert report["outcomes"] == ["DONE"] * WRITES
    assert {str(job) for job in seeded.jobs} <= {path.stem for path in (data_dir / "mail").glob("*.eml")}
    overlap = min(api_window[1], report["window"][1]) - max(api_window[0], report["window"][0])
    assert overlap > 0.8 * WRITES * PACE, (api_window, report["window"])
    # and the invariants hold: I1-I4 and the balances, and every outbox row done (I6)
    statuses = asyncio.run(invariants(settings, expected))
    assert set(seeded.jobs) <= set(statuses)
    assert {s for s in statuses.values() if s != OutboxStatus.DONE} == set(), Counter(statuses.values())


if __name__ == "__main__":
    worker_main(Path(sys.argv[1]))
