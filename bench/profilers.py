"""The profilers `--profile` runs after a workload's rounds: py-spy on a server, pyinstrument and cProfile in process.

py-spy samples the server's threads holding the GIL at 250 Hz into collapsed stacks; the
summary gives the self time by package and by function and the inclusive time of the
project's own functions. pyinstrument is not async-aware on purpose: the event loop's idle
time (waiting on PostgreSQL and Redis) shows as the loop's select, beside every task's CPU.
Every profile is also written in full to a file in the temporary directory, named in the output.
"""

from __future__ import annotations

import collections
import contextlib
import cProfile
import io
import pstats
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pyinstrument import Profiler

TOP = 20


def kept(name: str) -> Path:
    """Where a profile is written: the temporary directory, which outlives the run."""
    return Path(tempfile.gettempdir()) / name


def py_spy() -> str | None:
    beside = Path(sys.prefix) / "bin" / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


@dataclass
class Recording:
    process: subprocess.Popen[bytes]
    output: Path

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """End it now if it is still recording (what it has is written), and wait for it."""
        if self.running():
            self.process.terminate()
        self.process.wait(timeout=30)

    def report(self, title: str) -> None:
        if not self.output.exists():
            print(f"  {title}: py-spy wrote nothing")
            return
        print(f"\n  {title}:\n{summarise_stacks(self.output)}\n  collapsed stacks: {self.output}")


def record(pid: int | None, name: str, seconds: float) -> Recording | None:
    """py-spy recording `pid` for `seconds` into kept(name); None (and a line saying why) when it cannot."""
    spy = py_spy()
    if spy is None or pid is None:
        print("  profile: py-spy or the server's process not found (uv pip install py-spy), skipped")
        return None
    output = kept(name)
    output.unlink(missing_ok=True)
    argv = [spy, "record", "--pid", str(pid), "--rate", "250", "--gil", "--format", "raw"]
    argv += ["--duration", str(max(1, int(seconds))), "--output", str(output)]
    return Recording(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), output)


BUCKETS = [
    ("graphql-core", "(graphql/"),
    ("strawberry", "(strawberry/"),
    ("vouchsafe schema/", "(schema/"),
    ("vouchsafe services/", "(services/"),
    ("vouchsafe infra/", "(infra/"),
    ("vouchsafe web/", "(web/"),
    ("tortoise + pypika", "(tortoise/"),
    ("tortoise + pypika", "(pypika_tortoise/"),
    ("asyncpg", "(asyncpg/"),
    ("redis", "(redis/"),
    ("http: uvicorn, starlette", "(uvicorn/"),
    ("http: uvicorn, starlette", "(starlette/"),
    ("json", "(json/"),
    ("asyncio", "(asyncio/"),
    ("logging", "(logging/"),
]
PROJECT = ("(schema/", "(services/", "(infra/", "(web/", "(server.py")


def summarise_stacks(path: Path, top: int = TOP) -> str:
    """Self time by package and by function, and the inclusive time of our own code, from collapsed stacks."""
    by_bucket: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        total += count
        by_function[frames[-1]] += count
        by_bucket[next((name for name, marker in BUCKETS if marker in frames[-1]), "other")] += count
        for function in {
            frame.partition(" (")[0] + " " + frame.partition(" (")[2].rpartition(":")[0] + ")"
            for frame in frames
            if frame.startswith(PROJECT, frame.find(" (") + 1)
        }:
            inclusive[function] += count
    if not total:
        return "  no samples"
    out = [f"  {total} samples (threads holding the GIL); self time by package:"]
    out += [f"    {100 * n / total:5.1f} %  {name}" for name, n in by_bucket.most_common()]
    out.append("  self time by function:")
    out += [f"    {100 * n / total:5.1f} %  {name}" for name, n in by_function.most_common(top)]
    out.append("  inclusive time of the project's own functions:")
    out += [f"    {100 * n / total:5.1f} %  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(out)


@contextlib.contextmanager
def pyinstrument(title: str, name: str) -> Iterator[None]:
    """pyinstrument over the block (sampling every 0.5 ms); the top self times printed, the call tree kept."""
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
    flat = profiler.output_text(flat=True, show_all=False).splitlines()
    out = kept(name)
    out.write_text(profiler.output_text(show_all=False))
    print(f"\n  {title}, self time, top {TOP}:\n" + "\n".join(flat[: TOP + 6]) + f"\n  call tree: {out}")


@contextlib.contextmanager
def cprofile(title: str, pattern: str) -> Iterator[None]:
    """cProfile over the block; the functions matching `pattern` printed by cumulative time."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(pattern, 30)
    print(f"\n  {title}:\n{out.getvalue()}")
