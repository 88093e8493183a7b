"""py-spy on a server process under a benchmark's load, and a summary of where its time went.

Used by `bench.w1_dashboard --profile` and `bench.w3_redeem --profile`: py-spy samples
the threads holding the GIL at 250 Hz into collapsed stacks; the summary gives the self
time by package and by function and the inclusive time of the project's own functions.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path


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
        print(f"\n  {title}:\n{summarise_profile(self.output)}")
        kept = Path(tempfile.gettempdir()) / self.output.name
        shutil.copy(self.output, kept)
        print(f"  collapsed stacks kept in {kept}")


def record(pid: int | None, output: Path, seconds: float) -> Recording | None:
    """Start recording `pid` for `seconds`; None (and a line saying why) when it cannot be."""
    spy = py_spy()
    if spy is None or pid is None:
        print("  profile: py-spy or the server's process not found (uv pip install py-spy), skipped")
        return None
    argv = [spy, "record", "--pid", str(pid), "--rate", "250", "--gil", "--format", "raw"]
    argv += ["--duration", str(int(seconds)), "--output", str(output)]
    return Recording(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), output)


BUCKETS = [
    ("graphql-core", "(graphql/"),
    ("strawberry", "(strawberry/"),
    ("vouchsafe schema/", "(schema/"),
    ("vouchsafe services/", "(services/"),
    ("tortoise + pypika", "(tortoise/"),
    ("tortoise + pypika", "(pypika_tortoise/"),
    ("asyncpg", "(asyncpg/"),
    ("http: uvicorn, starlette", "(uvicorn/"),
    ("http: uvicorn, starlette", "(starlette/"),
    ("json", "(json/"),
    ("asyncio", "(asyncio/"),
    ("logging", "(logging/"),
]
PROJECT = ("(schema/", "(services/", "(server.py", "(redeem_page.py")


def summarise_profile(path: Path, top: int = 20) -> str:
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
        return "no samples"
    out = [f"{total} samples (threads holding the GIL); self time by package:"]
    out += [f"  {100 * n / total:5.1f} %  {name}" for name, n in by_bucket.most_common()]
    out.append("self time by function:")
    out += [f"  {100 * n / total:5.1f} %  {name}" for name, n in by_function.most_common(top)]
    out.append("inclusive time of the project's own functions:")
    out += [f"  {100 * n / total:5.1f} %  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(out)
