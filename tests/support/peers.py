"""What the peer suites share: their folder, Node with a package (or a skip; in CI a failure), commands, servers."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.processes import command, process_env, serving

PEERS = Path(__file__).resolve().parents[1] / "peers"
NODE_TIMEOUT = 120
ONLY = {"VOUCHSAFE_TRUSTED_DOCUMENTS": "only"}


def missing(what: str) -> None:
    """A tool the test needs is not installed: skipped here, a failure in CI (.ci/run installs it)."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing: .ci/run installs it before the peer suites")
    pytest.skip(f"{what} is missing; CI runs this test")


def unexpected_errors(log: Path) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if "ERROR" in line or "Traceback" in line]


def node_or_skip(package: str) -> str:
    """Node's path, once `package` is installed in tests/peers (`npm ci --prefix tests/peers`)."""
    node = shutil.which("node")
    if node is None:
        missing("node")
    if not (PEERS / "node_modules" / package).exists():
        missing(f"tests/peers/node_modules/{package} (npm ci --prefix tests/peers)")
    return str(node)


def tool(name: str) -> str:
    return str(PEERS / "node_modules" / ".bin" / name)


def run(args: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=NODE_TIMEOUT, check=False)


def vouchsafe(*args: str, data: Path, **env: str) -> str:
    """A `vouchsafe` command on the data dir, as an operator runs it; its output (it must succeed)."""
    ran = run([*command(), *args], cwd=data.parent, env=process_env(data, **env))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return ran.stdout


@contextlib.contextmanager
def allow_list_server(manifest: Path, documents: int, data: Path, log: Path) -> Iterator[httpx.Client]:
    """A release in allow-list mode: migrated, `manifest` loaded (its `documents` all new), then served."""
    vouchsafe("migrate", data=data, **ONLY)
    loaded = vouchsafe("documents", "load", str(manifest), data=data, **ONLY)
    assert f"{documents} documents added" in loaded, loaded
    with serving(data, log, extra_env=ONLY) as http:
        yield http
