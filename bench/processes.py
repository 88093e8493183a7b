"""Server subprocesses for the HTTP workloads: start on a free loopback port, read their CPU, stop them.

A server's CPU is read from /proc: utime + stime of the process and of every
descendant (`uv run` starts the Python process as its child; `--workers N` adds
uvicorn's worker processes below that), so a round's CPU is the difference of two
readings. The kernel counts in clock ticks (10 ms here): rounds must be long
enough for that not to matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def uv() -> str:
    """The uv that runs this benchmark (`uv run` sets UV), else the one on PATH."""
    found = os.environ.get("UV") or shutil.which("uv")
    if not found:
        raise SystemExit("bench: uv not found (run the benchmark with `uv run`)")
    return found


def _descendants(pid: int) -> list[int]:
    found = [pid]
    for current in found:
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as fh:
                    found.extend(int(child) for child in fh.read().split())
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU used so far by a process and its descendants (user + system)."""
    return sum(_cpu_ticks(p) for p in _descendants(pid)) / TICK


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            # The command name (field 2) may hold spaces: split after its closing parenthesis.
            fields = fh.read().rpartition(")")[2].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of the line)


class ServerProcess:
    """One HTTP server started as its own process group, so that stopping it stops all it started."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int, log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.port = port
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    async def ready(self, within: float = 60.0, path: str = "/healthz") -> float:
        """Wait until the server answers; the seconds it took since start."""
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited at start-up:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.url + path)).status_code == 200:
                        return time.monotonic() - started
                if time.monotonic() - started > within:
                    raise RuntimeError(f"{self.name} not ready after {within:.0f} s:\n{self.log_tail()}")
                await asyncio.sleep(0.05)

    def cpu_seconds(self) -> float:
        """CPU used so far by the server's process tree (user + system)."""
        assert self.process is not None
        return tree_cpu_seconds(self.process.pid)

    def python_pids(self) -> list[int]:
        """The server's Python processes (for a profiler), below `uv run`."""
        assert self.process is not None
        return [pid for pid in _descendants(self.process.pid)[1:] if _is_python(pid)]

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the group we started (uvicorn shuts down gracefully), SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=timeout)
        # Children still in the group (uv's child outliving uv) go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


def _is_python(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return "python" in os.readlink(f"/proc/{pid}/exe")
    return False
