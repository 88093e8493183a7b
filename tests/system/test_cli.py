"""The `vouchsafe` console command, run as a real subprocess against the run's database."""

from __future__ import annotations

import asyncio
import os
import re
from datetime import timedelta
from pathlib import Path

import pytest

from infra import clock
from models import Account, IdempotencyRecord
from services import accounts, idempotency
from tests.support.factories import PASSWORD, unique_email
from tests.support.processes import run_cli


@pytest.fixture
def cli_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    """The test process's environment, on the run's database, with a data dir of the test's own."""
    env = dict(os.environ)
    env["VOUCHSAFE_DATA_DIR"] = str(tmp_path / "data")
    env["DATABASE_URL"] = database_url
    return env


def test_export_schema_writes_the_sdl(tmp_path: Path, cli_env: dict[str, str]) -> None:
    # given
    output = tmp_path / "schema.graphql"
    # when
    result = run_cli("export-schema", "--output", str(output), env=cli_env)
    # then
    assert result.returncode == 0, result.stderr
    assert f"wrote {output}" in result.stdout
    assert "type Query" in output.read_text()


def test_staff_create_twice_is_refused_on_the_email(cli_env: dict[str, str]) -> None:
    # given
    email = unique_email("staff")
    first = run_cli("staff", "create", email, "--password", PASSWORD, env=cli_env)
    assert first.returncode == 0, first.stderr
    assert f"staff user {email} created" in first.stdout
    # when
    second = run_cli("staff", "create", email, "--password", PASSWORD, env=cli_env)
    # then
    assert second.returncode != 0
    assert "e-mail" in second.stderr
    assert "created" not in second.stdout


async def test_partner_enable_by_email_then_disable_by_id(db: None, cli_env: dict[str, str]) -> None:
    # given
    email = unique_email("partner")
    user = await accounts.sign_up(
        email=email, password=PASSWORD, account_name="Partner CLI", locale=None, public_url="http://127.0.0.1:8000"
    )
    account_id = user.account_id
    # when
    enabled = await asyncio.to_thread(run_cli, "partner", "enable", email, env=cli_env)
    # then
    assert enabled.returncode == 0, enabled.stderr
    assert "enabled" in enabled.stdout
    assert f"account {account_id} (Partner CLI)" in enabled.stdout
    assert (await Account.get(id=account_id)).is_partner is True
    # when
    disabled = await asyncio.to_thread(run_cli, "partner", "disable", str(account_id), env=cli_env)
    # then
    assert disabled.returncode == 0, disabled.stderr
    assert "disabled" in disabled.stdout
    assert (await Account.get(id=account_id)).is_partner is False


def test_partner_enable_unknown_account_fails(cli_env: dict[str, str]) -> None:
    result = run_cli("partner", "enable", "nobody@example.com", env=cli_env)
    assert result.returncode != 0
    assert "No such account" in result.stderr
    assert "enabled" not in result.stdout


def test_outbox_failed_lists_in_its_format(cli_env: dict[str, str]) -> None:
    # when
    result = run_cli("outbox", "failed", env=cli_env)
    # then: the session database is shared, so only the format is certain
    assert result.returncode == 0, result.stderr
    *rows, summary = result.stdout.splitlines()
    match = re.fullmatch(r"(\d+) failed", summary)
    assert match, result.stdout
    assert len(rows) == int(match.group(1))
    for row in rows:
        assert re.match(r"\d+\t\S+\tattempts=\d+\t\d{4}-\d{2}-\d{2} \d{2}:\d{2}\t", row), row


def test_worker_without_redis_url_exits_2(cli_env: dict[str, str]) -> None:
    # given
    cli_env.pop("REDIS_URL", None)
    # when
    result = run_cli("worker", env=cli_env)
    # then
    assert result.returncode == 2
    assert "REDIS_URL" in result.stdout + result.stderr


def test_ledger_verify_reports_a_balance_that_left_its_ledger(tmp_path: Path) -> None:
    # A database of the test's own: the session's holds accounts other tests broke on purpose.
    import sqlite3

    env = dict(os.environ, VOUCHSAFE_DATA_DIR=str(tmp_path / "data"))
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    ok = run_cli("ledger", "verify", env=env)
    assert ok.returncode == 0, ok.stderr
    assert "ledger ok" in ok.stdout
    with sqlite3.connect(tmp_path / "data" / "vouchsafe.sqlite3") as db:
        db.execute(
            "INSERT INTO account (name, currency, locale, is_partner, balance, created_at)"
            " VALUES ('drifted', 'USD', 'en', 0, 500, '2026-01-01 00:00:00')"
        )
    bad = run_cli("ledger", "verify", env=env)
    assert bad.returncode == 1
    assert re.search(r"account \d+: balance 500 != ledger sum 0", bad.stdout)


def test_the_listening_url_is_what_a_browser_here_reaches() -> None:
    from cli import listening_url

    assert listening_url("127.0.0.1", 18777) == "http://127.0.0.1:18777"
    assert listening_url("0.0.0.0", 9000) == "http://127.0.0.1:9000"
    assert listening_url("::", 9000) == "http://[::1]:9000"
    assert listening_url("vouchers.local", 80) == "http://vouchers.local:80"


async def test_payments_unresolved_lists_a_card_payment_cut_off_then_resolve_forgets_it_once(
    db: None, cli_env: dict[str, str]
) -> None:
    # given: a card request's record, its lease lapsed long ago (its process died after the charge)
    account = await Account.create(name="Limbo CLI")
    begun = await idempotency.begin(account_id=account.id, key="k", operation="fundsDeposit", request={"amount": 1})
    assert begun.record_id is not None
    lapsed = clock.now() - idempotency.UNRESOLVED_AFTER - timedelta(minutes=1)
    await IdempotencyRecord.filter(id=begun.record_id).update(locked_until=lapsed)
    # when
    listed = await asyncio.to_thread(run_cli, "payments", "unresolved", env=cli_env)
    # then: with the key the charge went under, to look it up at the provider
    assert listed.returncode == 0, listed.stderr
    row = f"{begun.record_id}\taccount {account.id}\tfundsDeposit\t"
    assert row in listed.stdout
    assert f"\t{account.id}:idem-{begun.record_id}\n" in listed.stdout
    resolved = await asyncio.to_thread(run_cli, "payments", "resolve", str(begun.record_id), env=cli_env)
    assert resolved.returncode == 0, resolved.stderr
    assert not await IdempotencyRecord.exists(id=begun.record_id)
    again = await asyncio.to_thread(run_cli, "payments", "resolve", str(begun.record_id), env=cli_env)
    assert again.returncode == 1
    assert "is not an unresolved card payment" in again.stderr
