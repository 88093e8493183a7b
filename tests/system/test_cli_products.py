"""`vouchsafe product list|set`: staff edit the catalogue, run as a real subprocess.

Each test has a data dir and an embedded database of its own: the catalogue is
shared state, and the session database must keep the seeded prices.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.support.processes import run_cli

SEEDED = {"BASIC_OV", "BASIC_EV", "SECURE_SITE_OV", "SECURE_SITE_EV"}
COLUMNS = [
    "code",
    "name",
    "years",
    "fqdns incl/max",
    "max wildcards",
    "base/yr",
    "fqdn/yr",
    "wildcard/yr",
    "currency",
    "active",
]


@pytest.fixture
def own_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, VOUCHSAFE_DATA_DIR=str(tmp_path / "data"))
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    return env


def table(stdout: str) -> dict[str, dict[str, str]]:
    """The printed table as {code: {column: cell}}; columns are two or more spaces apart."""
    header, *rows = (re.split(r"\s{2,}", line.strip()) for line in stdout.splitlines() if line.strip())
    assert header == COLUMNS, stdout
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


def listed(env: dict[str, str]) -> dict[str, dict[str, str]]:
    result = run_cli("product", "list", env=env)
    assert result.returncode == 0, result.stderr
    return table(result.stdout)


def test_list_shows_the_four_seeded_products(own_env: dict[str, str]) -> None:
    # when
    products = listed(own_env)
    # then
    assert set(products) == SEEDED
    assert products["BASIC_OV"] == {
        "code": "BASIC_OV",
        "name": "Basic OV",
        "years": "1,2,3",
        "fqdns incl/max": "1/250",
        "max wildcards": "100",
        "base/yr": "175.00",
        "fqdn/yr": "75.00",
        "wildcard/yr": "450.00",
        "currency": "USD",
        "active": "yes",
    }
    assert products["SECURE_SITE_EV"]["max wildcards"] == "0"
    assert products["SECURE_SITE_EV"]["base/yr"] == "995.00"


def test_set_changes_prices_and_list_shows_them(own_env: dict[str, str]) -> None:
    # given
    before = listed(own_env)
    # when
    result = run_cli(
        "product", "set", "basic_ov", "--base", "180.50", "--wildcard-price", "475", "--inactive", env=own_env
    )
    # then
    assert result.returncode == 0, result.stderr
    assert "product BASIC_OV updated" in result.stdout
    after = listed(own_env)
    assert after["BASIC_OV"]["base/yr"] == "180.50"
    assert after["BASIC_OV"]["wildcard/yr"] == "475.00"
    assert after["BASIC_OV"]["fqdn/yr"] == "75.00"
    assert after["BASIC_OV"]["active"] == "no"
    assert {code: row for code, row in after.items() if code != "BASIC_OV"} == {
        code: row for code, row in before.items() if code != "BASIC_OV"
    }


def test_set_unknown_code_exits_non_zero(own_env: dict[str, str]) -> None:
    # when
    result = run_cli("product", "set", "NO_SUCH_PRODUCT", "--base", "1.00", env=own_env)
    # then
    assert result.returncode != 0
    assert "No product NO_SUCH_PRODUCT" in result.stderr
    assert "updated" not in result.stdout


def test_ev_product_refuses_wildcards(own_env: dict[str, str]) -> None:
    # when
    result = run_cli("product", "set", "BASIC_EV", "--max-wildcards", "1", env=own_env)
    # then
    assert result.returncode != 0
    assert "EV product allows no wildcards" in result.stderr
    assert listed(own_env)["BASIC_EV"]["max wildcards"] == "0"


def test_a_price_with_too_many_decimals_changes_nothing(own_env: dict[str, str]) -> None:
    # when
    result = run_cli("product", "set", "BASIC_OV", "--base", "175.001", "--name", "Renamed", env=own_env)
    # then
    assert result.returncode != 0
    assert "at most 2 decimals" in result.stderr
    assert listed(own_env)["BASIC_OV"]["name"] == "Basic OV"
