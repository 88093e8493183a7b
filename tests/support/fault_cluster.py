"""Two `vouchsafe serve` and two `vouchsafe worker` processes, and the faults done to them (F12).

Only processes this module started, and the test's own redis-server, are ever killed
or stopped; PostgreSQL terminates only the connections of the test's own database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from settings import Settings
from tests.support.processes import command, deployed_env
from tests.support.redis import OwnRedis
from tests.support.running import free_port

START_TIMEOUT = 60.0
# Bounds short enough for the test to see recovery in seconds (the defaults are documented in docs/resilience.md).
SERVICE_ENV = {
    "VOUCHSAFE_REDIS_TIMEOUT_SECONDS": "1",
    "VOUCHSAFE_DB_STATEMENT_TIMEOUT_SECONDS": "5",
    "VOUCHSAFE_DB_POOL_TIMEOUT_SECONDS": "3",
    "VOUCHSAFE_DB_POOL_SIZE": "8",
    "VOUCHSAFE_OUTBOX_SWEEP_SECONDS": "1",
    # The job timeout (180 s) and the outbox lease (10 s) keep their defaults: recovery must not need shorter ones.
}
# What a traceback in a log may end with: the faults this test makes, nothing else.
OUTAGE = re.compile(
    r"(ConnectionDoesNotExistError|AdminShutdownError|InterfaceError: .*(closed|released)|"
    r"redis\.exceptions\.(ConnectionError|TimeoutError|BusyLoadingError)|ConnectionRefusedError|"
    r"ConnectionResetError|TimeoutError|CancelledError|OSError|QueryCanceledError|"
    r"CannotConnectNowError|TooManyConnectionsError|BrokenPipeError|"
    r"InternalClientError: .*another operation \(2\) is in progress)"
)


class Cluster:
    def __init__(self, settings: Settings, redis: OwnRedis, root: Path) -> None:
        self.settings = settings
        self.redis = redis
        self.root = root
        self.command = command()
        self.ports = [free_port(), free_port()]
        self.apis: list[subprocess.Popen[bytes] | None] = [None, None]
        self.workers: list[subprocess.Popen[bytes]] = []
        self.all: list[subprocess.Popen[bytes]] = []
        self.api_down: list[tuple[int, float, float]] = []  # (instance, from, until)
        self.mail_dir = root / "workers" / "mail"

    def env(self, data_dir: Path) -> dict[str, str]:
        data_dir.mkdir(parents=True, exist_ok=True)
        return deployed_env(self.settings, data_dir, redis_url=self.redis.url, **SERVICE_ENV)

    def _spawn(self, name: str, args: list[str], data_dir: Path) -> subprocess.Popen[bytes]:
        with (self.root / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [*self.command, *args],
                env=self.env(data_dir),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.all.append(process)
        return process

    def api_port(self, n: int) -> int:
        return self.ports[n % 2]

    def api_live(self, n: int, started: float, ended: float) -> bool:
        """Was instance n up for the whole request (not killed, nor starting again, meanwhile)?"""
        return not any(i == n % 2 and start <= ended and started <= until for i, start, until in self.api_down)

    async def start_api(self, n: int) -> None:
        self.apis[n] = self._spawn(
            f"api-{n}", ["serve", "--host", "127.0.0.1", "--port", str(self.ports[n])], self.root / f"api-{n}"
        )
        await self._healthy(n)

    async def _healthy(self, n: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        async with httpx.AsyncClient(timeout=2) as http:
            # Polled: the API is a process of its own; ready once /healthz answers.
            while time.monotonic() < deadline:
                process = self.apis[n]
                assert process is not None
                assert process.poll() is None, self.logs()[-3000:]
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"http://127.0.0.1:{self.ports[n]}/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise AssertionError(f"api-{n} did not start\n{self.logs()[-3000:]}")

    def start_worker(self) -> None:
        # Both workers write their e-mails to one directory: <outbox id>.eml.
        self.workers.append(self._spawn(f"worker-{len(self.workers)}", ["worker"], self.root / "workers"))

    async def start(self) -> None:
        self.start_worker()
        self.start_worker()
        await asyncio.gather(self.start_api(0), self.start_api(1))

    def stop(self) -> None:
        for process in self.all:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.all:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def logs(self) -> str:
        keep = os.environ.get("F12_KEEP_LOGS")  # a directory to copy the processes' logs to
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            for path in self.root.glob("*.log"):
                (Path(keep) / path.name).write_bytes(path.read_bytes())
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in sorted(self.root.glob("*.log")))

    async def _redis_answers(self) -> float:
        """Wait (START_TIMEOUT at most) until the test's Redis answers PING; the monotonic time it did."""
        # Polled: the redis-server is another process, which the test restarts or wakes.
        async with asyncio.timeout(START_TIMEOUT):
            while True:
                with contextlib.suppress(OSError):
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection("127.0.0.1", self.redis.port), timeout=1
                    )
                    writer.write(b"PING\r\n")
                    await writer.drain()
                    line = await asyncio.wait_for(reader.readline(), timeout=1)
                    writer.close()
                    if line.startswith(b"+PONG"):
                        return time.monotonic()
                await asyncio.sleep(0.05)

    async def _caught_up(self, admin: asyncpg.Connection, since: float) -> float:
        """Seconds from `since` until every outbox row and PDF that exist now are done (inf after 120 s)."""
        last_row = await admin.fetchval("SELECT coalesce(max(id), 0) FROM outbox_message")
        last_order = await admin.fetchval("SELECT coalesce(max(id), 0) FROM voucher_order")
        # Polled: the API and worker processes of the cluster do the work.
        while True:
            left = await admin.fetchval(
                "SELECT count(*) FROM outbox_message WHERE id <= $1 AND status <> 'DONE'", last_row
            )
            pdfs = await admin.fetchval(
                "SELECT count(*) FROM voucher_order WHERE id <= $1 AND pdf_status <> 'READY'", last_order
            )
            if left == 0 and pdfs == 0:
                return time.monotonic() - since
            if time.monotonic() - since > 120:
                return float("inf")
            await asyncio.sleep(0.25)

    async def faults(self, admin: asyncpg.Connection, figures: dict[str, Any]) -> None:
        """The faults, one after another, under the load; what each cost, in `figures`."""
        kinds: list[str] = []
        await asyncio.sleep(8)
        # A worker killed mid-work; a new one started (as a supervisor would).
        os.kill(self.workers[0].pid, signal.SIGKILL)
        kinds.append("worker kill -9")
        await asyncio.sleep(3)
        self.start_worker()
        await asyncio.sleep(6)
        # An API process killed; started again on its port.
        down = time.monotonic()
        api = self.apis[0]
        assert api is not None
        self.api_down.append((0, down, float("inf")))
        os.kill(api.pid, signal.SIGKILL)
        api.wait(timeout=10)
        kinds.append("api kill -9")
        await self.start_api(0)
        self.api_down[-1] = (0, down, time.monotonic())
        figures["API instance back after kill -9, s"] = round(time.monotonic() - down, 1)
        await asyncio.sleep(6)
        # Redis killed and started again empty (nothing on disk), under load.
        assert self.redis.process is not None
        self.redis.process.kill()
        self.redis.process.wait(timeout=10)
        kinds.append("redis kill -9, restarted empty")
        await asyncio.sleep(4)
        self.redis.start()
        back = await self._redis_answers()
        figures["recovery after Redis restarted empty, s"] = round(await self._caught_up(admin, back), 1)
        await asyncio.sleep(4)
        # Redis frozen: accepts connections, answers nothing; then woken.
        assert self.redis.process is not None
        os.kill(self.redis.process.pid, signal.SIGSTOP)
        kinds.append("redis SIGSTOP 15 s")
        await asyncio.sleep(15)
        os.kill(self.redis.process.pid, signal.SIGCONT)
        back = await self._redis_answers()
        figures["recovery after Redis woke, s"] = round(await self._caught_up(admin, back), 1)
        await asyncio.sleep(4)
        # PostgreSQL terminates every connection of the service (not the test's own).
        terminated = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        kinds.append(f"pg_terminate_backend x{terminated}")
        await asyncio.sleep(8)
        figures["faults"] = kinds

    async def drained(self, admin: asyncpg.Connection, *, within: float) -> float:
        seconds = await self._caught_up(admin, time.monotonic())
        assert seconds <= within, (seconds, await self.invariants(admin))
        return seconds

    async def invariants(self, admin: asyncpg.Connection) -> dict[str, Any]:
        mails = {p.stem for p in self.mail_dir.glob("*.eml")} if self.mail_dir.exists() else set()
        expected = [r["id"] for r in await admin.fetch("SELECT id FROM outbox_message WHERE task = 'send_email'")]
        return {
            "balances": await admin.fetch("SELECT id, balance FROM account"),
            "ledger_mismatch": await admin.fetch(
                "SELECT a.id FROM account a LEFT JOIN ledger_entry l ON l.account_id = a.id"
                " GROUP BY a.id, a.balance HAVING a.balance <> coalesce(sum(l.amount), 0)"
            ),
            "double_use": await admin.fetch(
                "SELECT voucher_id FROM certificate_request WHERE status IN ('SUBMITTED', 'ISSUED')"
                " GROUP BY voucher_id HAVING count(*) > 1"
            ),
            "cancelled_and_used": await admin.fetch(
                "SELECT o.id FROM voucher_order o JOIN voucher v ON v.order_id = o.id"
                " WHERE o.status = 'CANCELLED' AND v.status = 'VALID_USED'"
            ),
            "pdf_not_ready": await admin.fetch(
                "SELECT id, status, pdf_status FROM voucher_order WHERE pdf_status <> 'READY'"
            ),
            "outbox": dict(await admin.fetch("SELECT status, count(*) FROM outbox_message GROUP BY status")),
            "missing_mails": [i for i in expected if str(i) not in mails],
            "mails": len(mails),
        }


def outage_traceback_problems(logs: str) -> list[str]:
    """Tracebacks that do not end in one of the faults made, and every masked internal error."""
    problems = [line for line in logs.splitlines() if "unexpected error in" in line]
    for block in logs.split("Traceback (most recent call last):")[1:]:
        ending = next(
            (
                line
                for line in block.splitlines()
                if line and not line.startswith((" ", "\t", "Traceback")) and ("Error" in line or ":" in line)
            ),
            "",
        )
        if not OUTAGE.search(ending):
            frames = [line.strip() for line in block.splitlines() if line.strip().startswith("File ")]
            problems.append(f"{ending or block[:300]} (at {' < '.join(frames[-8:][::-1])})")
    return problems
