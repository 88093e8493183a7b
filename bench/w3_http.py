"""W3 over HTTP: server processes for a round, and a lean keep-alive HTTP/1.1 load client.

The client is a few lines on asyncio streams rather than httpx: measured here, httpx
spends ~0.9 ms of CPU a request (it managed ~1,000 requests/s against a bare
/healthz), this client ~30 µs (~10,000/s). With two cores shared by the client, the
server and PostgreSQL, httpx would have measured httpx. It speaks only what the two
servers answer: HTTP/1.1 with Content-Length, connections kept alive.

Each client connects from a loopback address of its own (127.0.1.x), as distinct
customers would: the redemption rate limit counts per client address.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.processes import tree_cpu_seconds

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
REQUEST_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def client_address(index: int) -> str:
    """A loopback source address of the client's own (Linux routes all of 127/8 to lo)."""
    return f"127.0.{1 + index // 250}.{1 + index % 250}"


class HttpError(RuntimeError):
    pass


class Connection:
    """One keep-alive HTTP/1.1 connection: POST JSON, read one Content-Length response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self._reader, self._writer, self._host = reader, writer, host

    @classmethod
    async def open(cls, port: int, *, source: str) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        return cls(reader, writer, f"127.0.0.1:{port}")

    async def post_json(self, path: str, body: dict[str, Any], *, token: str) -> Any:
        payload = json.dumps(body, separators=(",", ":")).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self._host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        self._writer.write(head.encode() + payload)
        async with asyncio.timeout(REQUEST_TIMEOUT):
            raw = await self._reader.readuntil(b"\r\n\r\n")
            status_line, *headers = raw.decode("latin-1").split("\r\n")
            length = next((int(h.split(":", 1)[1]) for h in headers if h.lower().startswith("content-length:")), None)
            if length is None:
                raise HttpError(f"no Content-Length in the answer to {path}: {status_line}")
            data = await self._reader.readexactly(length)
        if not status_line.startswith("HTTP/1.1 200"):
            raise HttpError(f"{path}: {status_line}: {data[:300]!r}")
        return json.loads(data)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


@dataclass
class Server:
    """A server subprocess on a free loopback port, its output in a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    processes: int = 1
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.argv, "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the process group is ours to stop, workers included
            )

    async def wait_ready(self, deadline: float) -> None:
        """Until every server process has finished its start-up (uvicorn logs one line each)."""
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.log_path.read_text(errors="replace").count("Application startup complete") >= self.processes:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready in time:\n{self.log_tail()}")
            await asyncio.sleep(0.05)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(not started)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        """CPU used so far by the server's process tree (bench.processes)."""
        return tree_cpu_seconds(self.process.pid) if self.process is not None else 0.0

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT)


@contextlib.contextmanager
def running(servers: list[Server]) -> Iterator[list[Server]]:
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def server_env(db_url: str, redis_url: str, namespace: str, data_dir: Path) -> dict[str, str]:
    def key() -> str:
        return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()

    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(data_dir)),
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "VOUCHSAFE_QUEUE_NAME": namespace,
        "VOUCHSAFE_DATA_DIR": str(data_dir),
        "VOUCHSAFE_SECRET_KEY": key(),
        "VOUCHSAFE_CODE_KEY": key(),
        # The seeding's outbox rows are deleted; the relay's periodic sweep should not queue them first.
        "VOUCHSAFE_OUTBOX_SWEEP_SECONDS": "3600",
    }


def servers(env: dict[str, str], log_dir: Path, against: str | None = None) -> dict[str, Server]:
    """The four servers: `vouchsafe serve` and the bare app (or `against`'s serve), on one process and on two."""
    serve = [str(Path(sys.executable).with_name("vouchsafe")), "serve"]
    bare = [against, "serve"] if against else [sys.executable, "-m", "bench.w3_bare"]
    specs = {
        "serve": (serve, 1),
        "bare": (bare, 1),
        "serve2": ([*serve, "--workers", "2"], 2),
        "bare2": ([*bare, "--workers", "2"], 2),
    }
    # Two processes share the 32 clients: 16 connections each (the default 20 for one).
    env2 = {**env, "VOUCHSAFE_DB_POOL_SIZE": "16"}
    return {
        name: Server(name, argv, env if n == 1 else env2, log_dir / f"{name}.log", n)
        for name, (argv, n) in specs.items()
    }


REDEEM_MUTATION = (
    "mutation Redeem($input: VoucherRedeemInput!) { voucherRedeem(input: $input) {"
    " certificateRequest { id commonName status } errors { code field message } } }"
)
COMMON_NAME = "www.example.com"


def graphql_redeem(code: str) -> tuple[str, dict[str, Any]]:
    return "/graphql", {"query": REDEEM_MUTATION, "variables": {"input": {"code": code, "commonName": COMMON_NAME}}}


def bare_redeem(code: str) -> tuple[str, dict[str, Any]]:
    return "/redeem", {"code": code, "commonName": COMMON_NAME}


def redeem_payload(answer: Any) -> dict[str, Any]:
    """The payload with `certificateRequest` and `errors`, from either server's answer."""
    if "data" not in answer:  # the bare endpoint answers the payload itself
        return dict(answer)
    if answer.get("errors"):
        raise HttpError(f"GraphQL errors: {answer['errors']}")
    return dict(answer["data"]["voucherRedeem"])


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    server_cpu: float = 0.0  # seconds of the server's CPU over the counted rounds
    client_cpu: float = 0.0  # seconds of this (the load client's) process's CPU over them
    served: int = 0  # redeems in those rounds

    def cpu_ms_per_request(self) -> float:
        return self.server_cpu * 1000 / self.served if self.served else float("nan")

    def client_ms_per_request(self) -> float:
        return self.client_cpu * 1000 / self.served if self.served else float("nan")


async def http_round(
    port: int, shape: Any, batches: list[list[str]], tokens: list[str], tally: Tally | None = None
) -> float:
    """Every client redeems its batch of codes one after another; all clients at once. Returns redeems/s."""
    connections = await asyncio.gather(*(Connection.open(port, source=client_address(i)) for i in range(len(batches))))
    tally = tally if tally is not None else Tally()

    async def client(i: int, codes: list[str]) -> None:
        for code in codes:
            path, body = shape(code)
            started = time.perf_counter()
            payload = redeem_payload(await connections[i].post_json(path, body, token=tokens[i]))
            tally.latencies.append(time.perf_counter() - started)
            if payload["errors"] or not payload["certificateRequest"]:
                tally.failures.append(str(payload["errors"]))

    try:
        started = time.perf_counter()
        await asyncio.gather(*(client(i, codes) for i, codes in enumerate(batches)))
        elapsed = time.perf_counter() - started
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    return sum(len(b) for b in batches) / elapsed


async def contention(port: int, codes: list[str], tokens: list[str]) -> list[int]:
    """For each code, one request from every client at once; the number of winners per code."""
    connections = await asyncio.gather(
        *(Connection.open(port, source=client_address(100 + i)) for i in range(len(tokens)))
    )
    winners = []
    try:
        for code in codes:
            path, body = graphql_redeem(code)
            answers = await asyncio.gather(
                *(c.post_json(path, body, token=token) for c, token in zip(connections, tokens, strict=True))
            )
            payloads = [redeem_payload(a) for a in answers]
            losers = [p for p in payloads if p["errors"]]
            if any(e["code"] != "VOUCHER_NOT_REDEEMABLE" for p in losers for e in p["errors"]):
                raise HttpError(f"a loser failed for another reason: {losers}")
            winners.append(sum(1 for p in payloads if p["certificateRequest"] and not p["errors"]))
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    return winners
