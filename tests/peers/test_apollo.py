"""Issue 25 with the client SPAs use: Apollo Client 4 and Apollo's own manifest tool, against a real serve.

- Automatic persisted queries (apollo.mjs `apq`), on a development server: the real
  `PersistedQueryLink` sends a hash, gets PERSISTED_QUERY_NOT_FOUND, sends the text; the
  document is then stored (`vouchsafe documents list` shows it) and other clients' hashes
  alone run it, by GET for queries.
- Safelisting (apollo.mjs `safelist`), on an allow-list server: Apollo's
  `generate-persisted-query-manifest` writes the manifest from the SPA's sources
  (spa/operations.js), `vouchsafe documents load` stores it as a release would, and the
  client sends ids from it (`generatePersistedQueryIdsFromManifest`): every operation runs by
  its id alone; anything else is refused (PERSISTED_QUERY_REQUIRED), text or not.

Every request the client sends is checked (method, text or hash, status), not only the
answers. Marked `peers` with the other public tools: their own step of .ci/run, which runs
`npm ci --prefix tests/peers` first.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.peers.test_peers import PEERS, missing, unexpected_errors
from tests.support.factories import unique_email
from tests.support.processes import command, process_env, serving

pytestmark = pytest.mark.peers

NODE_TIMEOUT = 120


def node_or_skip() -> str:
    node = shutil.which("node")
    if node is None:
        missing("node")
    if not (PEERS / "node_modules" / "@apollo" / "client").exists():
        missing("tests/peers/node_modules (npm ci --prefix tests/peers)")
    return str(node)


def run(args: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=NODE_TIMEOUT, check=False)


def apollo(node: str, *args: str) -> None:
    ran = run([node, str(PEERS / "apollo.mjs"), *args], cwd=PEERS)
    print(ran.stdout)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "every check passed" in ran.stdout


def test_apollo_apq_registers_a_document_once_then_sends_its_hash(tmp_path: Path) -> None:
    node = node_or_skip()
    data, log = tmp_path / "data", tmp_path / "serve.log"
    with serving(data, log) as http:
        apollo(node, "apq", f"{http.base_url}/graphql", unique_email("apq"))
    listed = run([*command(), "documents", "list"], cwd=tmp_path, env=process_env(data))
    assert listed.returncode == 0, listed.stderr
    # Stored in the database, so every instance knows them: the two queries and the three mutations.
    assert listed.stdout.count("\tapq\t") == 5, listed.stdout
    assert not unexpected_errors(log), unexpected_errors(log)[:20]


def test_apollo_safelisting_runs_the_manifest_and_refuses_the_rest(tmp_path: Path) -> None:
    node = node_or_skip()
    manifest = tmp_path / "persisted-query-manifest.json"
    config = tmp_path / "persisted-query-manifest.config.json"
    config.write_text(json.dumps({"documents": ["spa/**/*.js"], "output": str(manifest)}))
    generated = run(
        [str(PEERS / "node_modules" / ".bin" / "generate-persisted-query-manifest"), "-c", str(config)], cwd=PEERS
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    written = json.loads(manifest.read_text())
    assert written["format"] == "apollo-persisted-query-manifest"
    assert len(written["operations"]) == 5

    data, log = tmp_path / "data", tmp_path / "serve.log"
    env = process_env(data, VOUCHSAFE_TRUSTED_DOCUMENTS="only")
    migrated = run([*command(), "migrate"], cwd=tmp_path, env=env)
    assert migrated.returncode == 0, migrated.stderr
    loaded = run([*command(), "documents", "load", str(manifest)], cwd=tmp_path, env=env)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert "5 documents added" in loaded.stdout, loaded.stdout
    with serving(data, log, extra_env={"VOUCHSAFE_TRUSTED_DOCUMENTS": "only"}) as http:
        apollo(node, "safelist", f"{http.base_url}/graphql", unique_email("safelist"), str(manifest))
    assert not unexpected_errors(log), unexpected_errors(log)[:20]
