"""For tests that run the project's own commands as processes (`vouchsafe serve`, `worker`, ...).

The command as a deployment runs it, the environment it is given (nothing of the
test run's own), and stopping it the way an operator's SIGTERM does.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

from settings import Settings

ROOT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT = 15.0


def command() -> list[str]:
    """The installed console script next to this interpreter, else the module (cli.py has a __main__ guard)."""
    script = Path(sys.executable).with_name("vouchsafe")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


def process_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """An empty environment but for a data dir of its own (the embedded default), plus `extra`."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(data_dir)),
        "VOUCHSAFE_DATA_DIR": str(data_dir),
        **extra,
    }


def deployed_env(settings: Settings, data_dir: Path, *, redis_url: str, **extra: str) -> dict[str, str]:
    """What a deployed process is given: the run's database and queue, the test's keys, plus `extra`."""

    def key(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).decode()

    deployed = {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": redis_url,
        "VOUCHSAFE_QUEUE_NAME": settings.queue_name,
        "VOUCHSAFE_CODE_KEY": key(settings.code_key),
        "VOUCHSAFE_SECRET_KEY": key(settings.secret_key),
        "VOUCHSAFE_OUTBOX_SWEEP_SECONDS": "0.5",
    }
    return process_env(data_dir, **{**deployed, **extra})


def stop(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM, as an operator stops it; SIGKILL if it has not ended in `timeout`. Its exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait(timeout=timeout)
