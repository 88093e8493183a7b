"""For the console's browser tests: `vouchsafe serve` (and, on PostgreSQL, a worker) at a known public URL.

Embedded default: one serve process on a data dir of its own (SQLite, in-process worker).
PostgreSQL run (DATABASE_URL, REDIS_URL set): serve and a separate `vouchsafe worker` on the
run's database and Redis, sharing the data dir (mail files, PDFs), as a deployment runs them.
"""

from __future__ import annotations

import base64
import contextlib
import email
import email.policy
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page

from settings import Settings
from tests.support.browser import WAIT_MS
from tests.support.factories import PASSWORD, unique_email
from tests.support.processes import START_TIMEOUT, command, poll, process_env, stop
from tests.support.running import free_port
from tests.support.stores import REDIS_URL

LINK = re.compile(r"https?://[^\s<>\"')]+")


@dataclass
class Console:
    base: str
    data_dir: Path
    env: dict[str, str]
    http: httpx.Client

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [*command(), *args], env=self.env, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def mails(self) -> list[email.message.EmailMessage]:
        found = []
        for path in sorted((self.data_dir / "mail").glob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(message, email.message.EmailMessage)
            found.append(message)
        return found


def _env(settings: Settings, data_dir: Path, base: str, on_postgres: bool, extra: dict[str, str]) -> dict[str, str]:
    # Webhooks to loopback (the test's own receiver address) are for development and tests only.
    env = {
        "VOUCHSAFE_PUBLIC_URL": base,
        "VOUCHSAFE_OUTBOX_SWEEP_SECONDS": "0.5",
        "VOUCHSAFE_WEBHOOKS_ALLOW_INSECURE": "1",
        **extra,
    }
    if on_postgres:
        assert REDIS_URL

        def key(value: bytes) -> str:
            return base64.urlsafe_b64encode(value).decode()

        env |= {
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": REDIS_URL,
            "VOUCHSAFE_QUEUE_NAME": settings.queue_name,
            "VOUCHSAFE_CODE_KEY": key(settings.code_key),
            "VOUCHSAFE_SECRET_KEY": key(settings.secret_key),
        }
    return process_env(data_dir, **env)


@contextlib.contextmanager
def console_server(
    settings: Settings, tmp_path: Path, *, on_postgres: bool, extra_env: dict[str, str] | None = None
) -> Iterator[Console]:
    data_dir = tmp_path / "served"
    data_dir.mkdir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = _env(settings, data_dir, base, on_postgres, extra_env or {})
    processes: list[subprocess.Popen[bytes]] = []
    logs = tmp_path / "serve.log"
    try:
        with logs.open("ab") as log:
            serve = [*command(), "serve", "--host", "127.0.0.1", "--port", str(port)]
            runs = [serve, [*command(), "worker"]] if on_postgres else [serve]
            for argv in runs:
                processes.append(
                    subprocess.Popen(
                        argv, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
                    )
                )
        with httpx.Client(base_url=base, timeout=10.0) as http:

            def healthy() -> bool:
                for process in processes:
                    if process.poll() is not None:
                        raise AssertionError(f"exited with {process.returncode}:\n{logs.read_text()}")
                with contextlib.suppress(httpx.TransportError):
                    return http.get("/healthz").status_code == 200
                return False

            poll(healthy, timeout=START_TIMEOUT, what="GET /healthz")
            yield Console(base=base, data_dir=data_dir, env=env, http=http)
    finally:
        for process in processes:
            stop(process)


@dataclass
class Tab:
    """A browser context and its page; console errors (CSP violations among them) and script errors are kept."""

    context: BrowserContext
    page: Page
    shots: Path
    problems: list[str] = field(default_factory=list)

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def open_tab(browser: Browser, shots: Path, locale: str = "en-GB") -> Tab:
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(WAIT_MS)
    context.set_default_navigation_timeout(WAIT_MS)
    page = context.new_page()
    tab = Tab(context=context, page=page, shots=shots)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            tab.problems.append(f"console: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: tab.problems.append(f"page error: {error}"))
    return tab


def sign_in(tab: Tab, base: str, address: str, path: str = "/") -> None:
    page = tab.page
    page.goto(f"{base}{path}")
    page.wait_for_url("**/signin**")
    page.get_by_label("E-mail", exact=True).fill(address)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.locator("#session-email").wait_for()


def redeem_as_new_customer(page: Page, base: str, code: str) -> None:
    """A customer who has no account yet redeems `code` on the redemption page."""
    page.goto(f"{base}/redeem/{code}")
    page.get_by_role("button", name="I'm new here").click()
    page.get_by_label("E-mail").fill(unique_email("customer"))
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Your name or organisation").fill("Jane Customer")
    page.get_by_role("button", name="Create account", exact=True).click()
    page.get_by_label("Common name").fill("www.example.com")
    page.get_by_role("button", name="Submit request").click()
    page.locator("#result").wait_for()


def links_in(message: email.message.EmailMessage) -> list[str]:
    body = message.get_body(preferencelist=("plain",))
    text = body.get_content() if body is not None else ""
    return [link.rstrip(".,;") for link in LINK.findall(text)]
