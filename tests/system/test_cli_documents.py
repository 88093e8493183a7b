"""`vouchsafe documents collect|load|list`, run as real subprocesses; the shipped manifest is current."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import cli_documents
from services.trusted_documents import document_hash
from tests.support.processes import run_cli


@pytest.fixture
def own_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, VOUCHSAFE_DATA_DIR=str(tmp_path / "data"))
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    return env


def test_the_shipped_manifest_holds_every_document_of_the_projects_faces() -> None:
    shipped = json.loads(cli_documents.MANIFEST.read_text(encoding="utf-8"))
    assert shipped == cli_documents.collect(), "run `uv run vouchsafe documents collect` and commit the manifest"
    source = cli_documents.CONSOLE_DOCUMENTS.read_text(encoding="utf-8")
    ids = cli_documents.CONSOLE_IDS.read_text(encoding="utf-8")
    assert ids == cli_documents.console_ids_module(source), "run `uv run vouchsafe documents collect` and commit it"
    texts = set(shipped.values())
    # The redemption page's eight documents and the staff ones, each under its own hash.
    assert sum(text.lstrip().startswith(("query Redeem", "mutation Redeem")) for text in texts) == 8
    assert any("partnerEnable" in text for text in texts)
    # The console's documents.js exports, each as the browser builds it (template literals joined).
    console = cli_documents.console_module_documents(source)
    assert len(console) >= 30
    assert set(console) <= texts
    # The console's ids module names each of them by its id in the manifest.
    assert all(f'"sha256:{document_hash(text)}"' in ids for text in console)
    assert all(key == document_hash(text) for key, text in shipped.items())
    assert not cli_documents.invalid_documents(texts)


def test_load_then_list(own_env: dict[str, str], tmp_path: Path) -> None:
    text = "query CliViewer { viewer { user { email } } }"
    manifest = tmp_path / "persisted-documents.json"
    manifest.write_text(
        json.dumps({f"sha256:{document_hash(text)}": text, "my-relay-id": "query CliProducts { products { code } }"})
    )
    loaded = run_cli("documents", "load", str(manifest), env=own_env)
    assert loaded.returncode == 0, loaded.stderr
    assert "2 documents added, 0 already known" in loaded.stdout
    again = run_cli("documents", "load", str(manifest), env=own_env)
    assert "0 documents added, 2 already known" in again.stdout
    listed = run_cli("documents", "list", env=own_env)
    assert f"sha256:{document_hash(text)}" in listed.stdout
    assert "my-relay-id" in listed.stdout
    # Each also in graphql-core's printed form (for gql), as its own document of the same source.
    assert "manifest:persisted-documents.json (printed)" in listed.stdout
    assert "4 documents" in listed.stdout
    # An operator takes one back: its printed form goes with it; an unknown id is an error.
    removed = run_cli("documents", "remove", "my-relay-id", env=own_env)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.count("sha256:") == 2
    assert "2 documents" in run_cli("documents", "list", env=own_env).stdout
    unknown = run_cli("documents", "remove", "my-relay-id", env=own_env)
    assert unknown.returncode == 1
    assert "no stored document has the id 'my-relay-id'" in unknown.stderr


def test_a_document_the_schema_refuses_loads_nothing(own_env: dict[str, str], tmp_path: Path) -> None:
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"good": "query Good { products { code } }", "bad": "query Bad { nope }"}))
    loaded = run_cli("documents", "load", str(manifest), env=own_env)
    assert loaded.returncode == 1
    assert "Cannot query field 'nope'" in loaded.stderr
    assert "0 documents" not in loaded.stdout
    assert "0 documents" in run_cli("documents", "list", env=own_env).stdout


def test_a_wrong_hash_is_refused(own_env: dict[str, str], tmp_path: Path) -> None:
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({document_hash("query A { products { code } }"): "query B { products { code } }"}))
    loaded = run_cli("documents", "load", str(manifest), env=own_env)
    assert loaded.returncode == 1
    assert "not the sha256 of its document" in loaded.stderr
