"""For tests that run the project's own commands as processes (`vouchsafe serve`, `worker`, ...).

The command as a deployment runs it, the environment it is given (nothing of the
test run's own), and stopping it the way an operator's SIGTERM does.
"""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx

from settings import Settings
from tests.support.factories import PASSWORD, SIGN_IN, SIGN_UP, unique_email
from tests.support.running import free_port

ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT = 15.0
START_TIMEOUT = 60.0  # a loaded CI machine took over 30 s to migrate and start

T = TypeVar("T")


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


def poll(check: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.1) -> T:
    """Call `check` until it returns something truthy, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


@contextlib.contextmanager
def serving(
    data_dir: Path, log_path: Path, *, extra_env: dict[str, str] | None = None, extra_args: tuple[str, ...] = ()
) -> Iterator[httpx.Client]:
    """`vouchsafe serve` on a free loopback port with an empty environment (plus `extra_env`); stopped on exit."""
    port = free_port()
    env = process_env(data_dir, **(extra_env or {}))
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [*command(), "serve", "--host", "127.0.0.1", "--port", str(port), *extra_args],
            cwd=data_dir.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as http:

            def healthy() -> bool:
                if process.poll() is not None:
                    raise AssertionError(f"serve exited with {process.returncode}:\n{log_path.read_text()}")
                with contextlib.suppress(httpx.TransportError):
                    return http.get("/healthz").status_code == 200
                return False

            try:
                poll(healthy, timeout=START_TIMEOUT, what="GET /healthz")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{log_path.read_text()}") from None
            yield http
    finally:
        stop(process)


def graphql(http: httpx.Client, query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = http.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def sign_in(http: httpx.Client, email_address: str) -> str:
    payload = graphql(http, SIGN_IN, {"input": {"email": email_address, "password": PASSWORD}})["signIn"]
    assert payload["errors"] == [], payload
    return str(payload["token"])


def worker_env(settings: Settings, data_dir: Path, *, redis_url: str, smtp_url: str | None = None) -> dict[str, str]:
    """What a deployed worker is given, its mail to `smtp_url` (else files in its data dir)."""
    mail = {"VOUCHSAFE_SMTP_URL": smtp_url} if smtp_url else {}
    return deployed_env(settings, data_dir, redis_url=redis_url, VOUCHSAFE_LOG_LEVEL="INFO", **mail)


class Workers:
    """`vouchsafe worker` processes of this test; `stop()` ends every one still running."""

    def __init__(self, settings: Settings, root: Path) -> None:
        self.settings = settings
        self.root = root
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, *, redis_url: str, smtp_url: str | None = None) -> Path:
        """Start one worker; returns its data dir."""
        n = len(self.processes) + 1
        data_dir = self.root / f"worker-{n}"
        data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.root / f"worker-{n}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [*command(), "worker"],
                env=worker_env(self.settings, data_dir, redis_url=redis_url, smtp_url=smtp_url),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.processes.append((process, log_path))
        return data_dir

    def check_alive(self) -> None:
        for process, log_path in self.processes:
            if process.poll() is not None:
                raise AssertionError(f"worker exited with {process.returncode}:\n{log_path.read_text()}")

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text()}" for _, path in self.processes if path.exists())

    def stop(self) -> None:
        for process, _ in self.processes:
            if process.poll() is None:
                process.terminate()
        for process, _ in self.processes:
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT)


ORDER_CREATE = """mutation O($input: VoucherOrderCreateInput!) {
  voucherOrderCreate(input: $input) { order { id } errors { code field message } } }"""
REVEAL_CODES = """mutation R($id: ID!) { voucherCodesReveal(input: {orderId: $id}) {
  codes { code } errors { code message } } }"""
CLI_TIMEOUT = 60.0


def enable_partner(data_dir: Path, email: str) -> None:
    """`vouchsafe partner enable EMAIL` on the server's data dir, as staff do it."""
    done = subprocess.run(
        [*command(), "partner", "enable", email],
        cwd=data_dir.parent,
        env=process_env(data_dir),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def partner_order(http: httpx.Client, data_dir: Path, *, quantity: int = 1) -> tuple[str, str, list[str]]:
    """A new partner pays an order by card and reveals it: (its token, the order id, the codes)."""
    email = unique_email("partner")
    signed_up = graphql(
        http, SIGN_UP, {"input": {"email": email, "password": PASSWORD, "accountName": "Reseller SARL"}}
    )["signUp"]
    assert signed_up["errors"] == [], signed_up
    enable_partner(data_dir, email)
    token = sign_in(http, email)
    line = {"productCode": "BASIC_OV", "quantity": quantity, "validityYears": 1, "fqdns": 2, "wildcards": 1}
    created = graphql(
        http,
        ORDER_CREATE,
        {"input": {"lines": [line], "paymentMethod": "CREDIT_CARD", "cardToken": "tok_visa"}},
        token=token,
    )["voucherOrderCreate"]
    assert created["errors"] == [], created
    order_id = created["order"]["id"]
    revealed = graphql(http, REVEAL_CODES, {"id": order_id}, token=token)["voucherCodesReveal"]
    assert revealed["errors"] == [], revealed
    return token, order_id, [c["code"] for c in revealed["codes"]]


def run_cli(
    *args: str, env: dict[str, str], cwd: Path = ROOT, timeout: float = CLI_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """One `vouchsafe` command, run to its end (`timeout` at most)."""
    return subprocess.run(
        [*command(), *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
