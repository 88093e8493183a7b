"""docs/tutorial.md runs as written: every command and operation, in order, against a fresh server.

The tutorial's hidden annotations (HTML comments before each block) say what the reader does
with a block: `run` a shell command, send a GraphQL `step` (with the token of an earlier
step, `as=NAME`), keep values (`capture=NAME:path`), check them (`expect=path:value`), wait for
a background state (`wait=path:value`), follow a download link (`download=path:media-type`),
open a subscription (`subscribe name=...`) and read its next change (`event name=...`).
Values in angle brackets are what earlier steps captured. Every `errors` list in every answer
must be empty.

It runs on a true fresh start (`vouchsafe serve` with nothing but an empty data dir) in both
suites, and in the PostgreSQL run also deployed: a database of its own, `vouchsafe migrate`,
`serve` and `worker` on Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.live import Stream, session_for
from tests.support.processes import ROOT, command, process_env, serving, stop
from tests.support.stores import ON_POSTGRES, REDIS_URL, admin_database

TUTORIAL = ROOT / "docs" / "tutorial.md"
BLOCK = re.compile(r"<!--\s*(?P<note>.*?)\s*-->\s*\n```(?P<lang>\w+)\n(?P<body>.*?)\n```", re.DOTALL)
PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*)>")
WAIT_SECONDS = 60.0


@dataclass
class Block:
    kind: str  # run, step, subscribe, event
    lang: str
    body: str
    options: list[tuple[str, str]] = field(default_factory=list)

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.options if key == name]

    def one(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None


def blocks(text: str) -> list[Block]:
    found = []
    for match in BLOCK.finditer(text):
        kind, *options = match["note"].split()
        pairs = [tuple(option.split("=", 1)) for option in options]
        found.append(Block(kind, match["lang"], match["body"], [(k, v) for k, v in pairs]))
    return found


def at(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def no_errors(data: Any, where: str = "data") -> None:
    """Every payload's `errors` (and `notices` aside) is empty: the step did what the tutorial says."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "errors":
                assert value == [], f"{where}.errors: {value}"
            else:
                no_errors(value, f"{where}.{key}")
    elif isinstance(data, list):
        for index, item in enumerate(data):
            no_errors(item, f"{where}.{index}")


class Reader:
    """One reader of the tutorial: what it has captured, and the server it talks to."""

    def __init__(self, http: httpx.AsyncClient, env: dict[str, str], cwd: Path) -> None:
        self.http, self.env, self.cwd = http, env, cwd
        self.values: dict[str, str] = {}
        self.streams: dict[str, Stream] = {}
        self.sessions = contextlib.AsyncExitStack()

    def fill(self, text: str) -> str:
        return PLACEHOLDER.sub(lambda m: self.values[m[1]], text)

    def run(self, block: Block) -> None:
        for line in block.body.splitlines():
            argv = shlex.split(line)
            assert argv[:3] == ["uv", "run", "vouchsafe"], f"the tutorial runs only vouchsafe commands: {line}"
            result = subprocess.run(
                [*command(), *argv[3:]], env=self.env, cwd=self.cwd, capture_output=True, text=True, timeout=60
            )
            assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"

    async def send(self, block: Block) -> Any:
        token = self.values[name] if (name := block.one("as")) else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post("/graphql", json={"query": self.fill(block.body)}, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, f"{block.body}\n{body}"
        no_errors(body["data"])
        return body["data"]

    async def step(self, block: Block) -> None:
        data = await self.send(block)
        for wait in block.all("wait"):
            path, expected = wait.split(":", 1)
            deadline = time.monotonic() + WAIT_SECONDS
            # Polled: the tutorial is read as a client reads it, against a server process.
            while str(at(data, path)) != expected:
                assert time.monotonic() < deadline, f"{path} is {at(data, path)!r}, not {expected!r}"
                await asyncio.sleep(0.2)
                data = await self.send(block)
        for expect in block.all("expect"):
            path, expected = expect.split(":", 1)
            assert str(at(data, path)).lower() == self.fill(expected).lower(), f"{path} in {data}"
        for capture in block.all("capture"):
            name, path = capture.split(":", 1)
            self.values[name] = str(at(data, path))
        for download in block.all("download"):
            path, media_type = download.split(":", 1)
            # Signed, so no token; the path and query only: this server listens on a port of the test's own.
            link = httpx.URL(str(at(data, path)))
            response = await self.http.get(link.raw_path.decode())
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith(media_type)
            assert response.content

    async def subscribe(self, block: Block) -> None:
        token = self.values[block.one("as") or ""]
        url = str(self.http.base_url.copy_with(scheme="ws", path="/graphql"))
        session = await self.sessions.enter_async_context(session_for(url, token))
        stream = Stream(session, self.fill(block.body))
        self.streams[block.one("name") or ""] = stream
        first = await stream.next(within=10)  # the current state comes first
        no_errors(first)

    async def event(self, block: Block) -> None:
        stream = self.streams[block.one("name") or ""]
        expected = [expect.split(":", 1) for expect in block.all("expect")]
        await stream.until(lambda data: all(str(at(data, p)) == v for p, v in expected), within=WAIT_SECONDS)

    async def read(self, text: str) -> list[str]:
        done = []
        try:
            for block in blocks(text):
                if block.kind == "run":
                    self.run(block)
                else:
                    await getattr(self, block.kind)(block)
                done.append(block.kind)
        finally:
            for stream in self.streams.values():
                await stream.close()
            await self.sessions.aclose()
        return done


def test_the_tutorial_annotates_every_operation_it_shows() -> None:
    # A graphql or vouchsafe block without an annotation would be shown to readers and never run.
    text = TUTORIAL.read_text()
    annotated = {m.start("lang") for m in BLOCK.finditer(text)}
    shown = [m for m in re.finditer(r"```(graphql|sh)\n(.*?)\n```", text, re.DOTALL)]
    unrun = [m[2] for m in shown if m.start(1) not in annotated and m[2].strip() != "uv run vouchsafe serve"]
    assert unrun == []
    assert len(blocks(text)) >= 20


@contextlib.asynccontextmanager
async def deployed(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """A database of the tutorial's own, migrated; `vouchsafe worker` beside the server; Redis."""
    assert REDIS_URL
    async with admin_database() as database_url:
        env = process_env(
            tmp_path / "data",
            DATABASE_URL=database_url,
            REDIS_URL=REDIS_URL,
            VOUCHSAFE_QUEUE_NAME=f"tutorial-{tmp_path.name}",
        )
        with started_worker(env, tmp_path / "worker.log"):
            yield env


@contextlib.contextmanager
def started_worker(env: dict[str, str], log_path: Path) -> Iterator[None]:
    """`vouchsafe migrate`, then a `vouchsafe worker` until the block ends."""
    subprocess.run([*command(), "migrate"], env=env, check=True, timeout=120, capture_output=True)
    with log_path.open("ab") as log:
        worker = subprocess.Popen([*command(), "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        stop(worker)


async def read_tutorial(tmp_path: Path, env: dict[str, str]) -> list[str]:
    data_dir = Path(env["VOUCHSAFE_DATA_DIR"])
    with serving(data_dir, tmp_path / "serve.log", extra_env=env) as sync_http:
        async with httpx.AsyncClient(base_url=sync_http.base_url, timeout=30) as http:
            return await Reader(http, env, data_dir.parent).read(TUTORIAL.read_text())


async def test_the_tutorial_runs_in_order_from_a_fresh_start(tmp_path: Path) -> None:
    env = process_env(tmp_path / "data")
    done = await read_tutorial(tmp_path, env)
    assert done.count("step") >= 15
    assert "event" in done
    assert "run" in done


@pytest.mark.skipif(not ON_POSTGRES, reason="deployed on PostgreSQL + Redis in the PostgreSQL run")
async def test_the_tutorial_runs_deployed_on_postgres_and_redis(tmp_path: Path) -> None:
    async with deployed(tmp_path) as env:
        done = await read_tutorial(tmp_path, env)
    assert done.count("step") >= 15
