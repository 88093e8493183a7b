"""W3's load over HTTP: a lean keep-alive HTTP/1.1 client, the redeem requests, the tallies.

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
import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

REQUEST_TIMEOUT = 30.0


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


REDEEM_MUTATION = (
    "mutation Redeem($input: VoucherRedeemInput!) { voucherRedeem(input: $input) {"
    " certificateRequest { id commonName status } errors { code field message } } }"
)
COMMON_NAME = "www.example.com"


def graphql_redeem(code: str) -> tuple[str, dict[str, Any]]:
    return "/graphql", {"query": REDEEM_MUTATION, "variables": {"input": {"code": code, "commonName": COMMON_NAME}}}


REDEEM_DOCUMENT_ID = f"sha256:{hashlib.sha256(REDEEM_MUTATION.encode()).hexdigest()}"


def graphql_redeem_by_id(code: str) -> tuple[str, dict[str, Any]]:
    """The same mutation as a stored (trusted) document, sent by its id."""
    variables = {"input": {"code": code, "commonName": COMMON_NAME}}
    return "/graphql", {"documentId": REDEEM_DOCUMENT_ID, "variables": variables}


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
