"""Processes the workloads start: HTTP servers on free loopback ports, fresh interpreters, and their CPU and memory.

CPU is read from /proc: utime + stime of a process and of every descendant (`--workers N`
adds uvicorn's worker processes below the server), so a round's CPU is the difference of
two readings. The kernel counts in clock ticks (10 ms here): rounds must be long enough for
that not to matter. Memory is VmRSS / VmHWM of /proc/PID/status; writing 5 to
/proc/self/clear_refs resets a process's high-water mark, so a peak can be a task's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
STOP_SECONDS = 15.0
READY_LINE = "Application startup complete"  # uvicorn logs it once a process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def vouchsafe() -> str:
    """This checkout's `vouchsafe` executable (beside the interpreter running the bench)."""
    return str(Path(sys.executable).with_name("vouchsafe"))


def uvicorn_app(factory: str) -> list[str]:
    """The argv serving an app factory ("bench.w3_baseline:create_app") with uvicorn's defaults."""
    return [sys.executable, "-m", "uvicorn", "--factory", factory]


def server_env(**settings: str) -> dict[str, str]:
    """This process's environment without any VOUCHSAFE_ setting of its own, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOUCHSAFE_")}
    env.update(settings)
    return env


def spawn_pool() -> ProcessPoolExecutor:
    """One fresh interpreter (spawned, not forked): its memory figures are its own."""
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))


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


def memory_mb(field: str, pid: int | str = "self") -> float:
    """VmRSS (now) or VmHWM (the peak) of a process, in MiB."""
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith(field + ":"):
            return int(row.split()[1]) / 1024
    raise OSError(f"no {field} in /proc/{pid}/status")


def reset_peak_memory() -> float:
    """This process's RSS now, in MiB, with its high-water mark reset to it (Linux)."""
    with contextlib.suppress(OSError):  # else the peak includes start-up: still an upper bound
        Path("/proc/self/clear_refs").write_text("5")
    return memory_mb("VmRSS")


class ServerProcess:
    """An HTTP server started as its own process group, so that stopping it stops all it started."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path, processes: int = 1) -> None:
        self.name = name
        self.argv = [*argv, "--workers", str(processes)] if processes > 1 else argv
        self.env = env
        self.processes = processes
        self.port = free_port()
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.log_offset = 0  # where this start's lines begin: a restarted server appends to its log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        self.started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.log_offset = log.tell()
            self.process = subprocess.Popen(
                [*self.argv, "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    async def wait_ready(self, deadline: float) -> float:
        """Until every server process has finished its start-up; the seconds since start."""
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            lines = self.log_path.read_bytes()[self.log_offset :].decode(errors="replace")
            if lines.count(READY_LINE) >= self.processes:
                return time.monotonic() - self.started
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready in time:\n{self.log_tail()}")
            await asyncio.sleep(0.05)

    def cpu_seconds(self) -> float:
        """CPU used so far by the server's process tree (user + system)."""
        return tree_cpu_seconds(self.process.pid) if self.process is not None else 0.0

    def python_pid(self) -> int | None:
        """The server's (first) Python process, for a profiler."""
        if self.process is None:
            return None
        return next((pid for pid in _descendants(self.process.pid) if _is_python(pid)), None)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def stop(self) -> None:
        """SIGTERM to the group we started (uvicorn shuts down gracefully), SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_SECONDS)


@contextlib.contextmanager
def running(*servers: ServerProcess) -> Iterator[tuple[ServerProcess, ...]]:
    """The servers started; stopped on every way out, their logs' last lines printed if something failed."""
    try:
        for server in servers:
            server.start()
        yield servers
    except BaseException:
        for server in servers:
            print(f"--- {server.name} log (last lines) ---\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        for server in servers:
            server.stop()


def _is_python(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return "python" in os.readlink(f"/proc/{pid}/exe")
    return False
