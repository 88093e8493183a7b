"""`vouchsafe serve` as a new user runs it: no configuration at all, over real HTTP.

The server gets an empty environment (PATH, HOME and a data dir only), so it
always runs embedded -- SQLite, the in-process Redis stand-in and worker --
whichever database the rest of the suite runs on. `serve --workers N` runs on
PostgreSQL + Redis only: its test gets the run's database and queue name.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from tests.support.factories import PASSWORD, SIGN_UP, unique_email
from tests.support.processes import (
    START_TIMEOUT,
    STOP_TIMEOUT,
    graphql,
    poll,
    process_env,
    run_cli,
    serving,
    sign_in,
)
from tests.support.running import free_port
from tests.support.stores import REDIS_URL

MAIL_TIMEOUT = 15.0
VIEWER = "{ viewer { user { email role } account { name locale } } }"


def outbox_done(http: httpx.Client) -> int:
    response = http.get("/metrics")
    assert response.status_code == 200, response.text
    match = re.search(r'^vouchsafe_outbox_messages\{status="DONE"\} ([\d.]+)$', response.text, re.MULTILINE)
    assert match, response.text
    return int(float(match.group(1)))


def welcome_mail(mail_dir: Path) -> EmailMessage | None:
    files = sorted(mail_dir.glob("*.eml")) if mail_dir.is_dir() else []
    if not files:
        return None
    message = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def key_files(data_dir: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted((data_dir / "keys").iterdir())}


def test_serve_embedded_from_nothing_and_again(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    log_path = tmp_path / "serve.log"
    address = unique_email("fresh")
    account_name = "Atelier Dupont"

    # first start: nothing configured, nothing on disk
    with serving(data_dir, log_path) as http:
        ready = http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ok", "database": "ok", "redis": "ok", "live": "ok"}

        signed_up = graphql(
            http,
            SIGN_UP,
            {"input": {"email": address, "password": PASSWORD, "accountName": account_name, "locale": "fr"}},
        )["signUp"]
        assert signed_up["errors"] == [], signed_up
        token = sign_in(http, address)
        viewer = graphql(http, VIEWER, token=token)["viewer"]
        assert viewer["user"] == {"email": address, "role": "ADMIN"}
        assert viewer["account"] == {"name": account_name, "locale": "fr"}

        mail = poll(lambda: welcome_mail(data_dir / "mail"), timeout=MAIL_TIMEOUT, what="welcome e-mail")
        assert str(mail["Subject"]).startswith("Bienvenue"), mail["Subject"]
        assert account_name in str(mail["Subject"])
        assert mail["To"] == address
        text = mail.get_body(preferencelist=("plain",))
        assert text is not None
        assert account_name in text.get_content()

        assert poll(lambda: outbox_done(http), timeout=MAIL_TIMEOUT, what="outbox DONE in /metrics") >= 1

    keys = key_files(data_dir)
    assert set(keys) == {"vouchsafe_secret_key", "vouchsafe_code_key"}
    assert all(keys.values())
    assert all((data_dir / "keys" / name).stat().st_mode & 0o777 == 0o600 for name in keys)

    first_log = log_path.read_text()
    assert '"POST /graphql HTTP/1.1" 200' in first_log, first_log

    # second start: the same data dir, the same keys, the same user; no access log asked for
    with serving(data_dir, log_path, extra_args=("--no-access-log",)) as http:
        assert key_files(data_dir) == keys
        token = sign_in(http, address)
        viewer = graphql(http, VIEWER, token=token)["viewer"]
        assert viewer["user"]["email"] == address
        assert viewer["account"]["name"] == account_name

    second_log = log_path.read_text()[len(first_log) :]
    assert "Application startup complete" in second_log, second_log
    assert "HTTP/1.1" not in second_log, second_log


def test_serve_refuses_several_workers_on_the_embedded_default(tmp_path: Path) -> None:
    # given: no DATABASE_URL, no REDIS_URL (whichever database the suite runs on)
    env = process_env(tmp_path / "data")
    # when
    result = run_cli(
        "serve", "--workers", "2", "--port", str(free_port()), env=env, cwd=tmp_path, timeout=START_TIMEOUT
    )
    # then: refused before anything starts
    assert result.returncode == 2, result.stderr
    assert "`serve --workers N` needs DATABASE_URL (PostgreSQL) and REDIS_URL" in result.stderr
    assert "Uvicorn running" not in result.stderr


STARTED = re.compile(r"Started server process \[(\d+)\]")


def started_pids(log_path: Path, count: int) -> set[int] | None:
    """The server processes' ids once `count` of them have finished their start-up."""
    log = log_path.read_text()
    pids = set(map(int, STARTED.findall(log)))
    return pids if len(pids) == count and log.count("Application startup complete") == count else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.postgres
def test_serve_two_workers_on_postgres_and_redis(tmp_path: Path, database_url: str, queue_name: str) -> None:
    data_dir = tmp_path / "data"
    log_path = tmp_path / "serve.log"
    assert REDIS_URL
    env = {"DATABASE_URL": database_url, "REDIS_URL": REDIS_URL, "VOUCHSAFE_QUEUE_NAME": queue_name}
    address = unique_email("workers")

    with serving(data_dir, log_path, extra_env=env, extra_args=("--workers", "2")) as http:
        pids = poll(lambda: started_pids(log_path, 2), timeout=START_TIMEOUT, what="two server processes started up")
        assert all(pid_alive(pid) for pid in pids), pids
        ready = {"status": "ok", "database": "ok", "database_pool": "ok", "redis": "ok", "live": "ok"}
        assert http.get("/readyz").json() == ready
        signed_up = graphql(
            http, SIGN_UP, {"input": {"email": address, "password": PASSWORD, "accountName": "Two Workers"}}
        )["signUp"]
        assert signed_up["errors"] == [], signed_up
        # Fresh connections land on either process: a session is the database's, not a process's.
        for _ in range(4):
            with httpx.Client(base_url=http.base_url, timeout=10.0) as fresh:
                token = sign_in(fresh, address)
                assert graphql(fresh, VIEWER, token=token)["viewer"]["user"]["email"] == address
        # Codes never reach any process's access log.
        assert http.get("/redeem/VS-6AK81-7BEAW-CX117-HNK6K").status_code == 200

    log = log_path.read_text()
    assert "VS-6AK81" not in log
    assert "/redeem/VS-…" in log
    assert all(f"Finished server process [{pid}]" in log for pid in pids), log
    poll(lambda: not any(pid_alive(pid) for pid in pids), timeout=STOP_TIMEOUT, what="both processes gone")
