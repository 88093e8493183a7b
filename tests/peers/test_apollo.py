"""Issue 25 with the client SPAs use: Apollo Client 4 and Apollo's own manifest tool, against a real serve.

- Automatic persisted queries (apollo.mjs `apq`), on a development server: the real
  `PersistedQueryLink` sends a hash, gets PERSISTED_QUERY_NOT_FOUND, sends the text; the
  document is then stored (`vouchsafe documents list` shows it) and other clients' hashes
  alone run it, by GET for queries.
- Safelisting (apollo.mjs `safelist`), on an allow-list server: Apollo's
  `generate-persisted-query-manifest` writes the manifest from the SPA's sources
  (spa/operations.js), `vouchsafe documents load` stores it as a release would, and the
  client sends ids from it (`generatePersistedQueryIdsFromManifest`): every operation runs by
  its id alone, its subscription over graphql-ws (GraphQLWsLink); anything else is refused
  (PERSISTED_QUERY_REQUIRED), text or not, over HTTP and the WebSocket.

Every request the client sends is checked (method, text or hash, status), not only the
answers. Marked `peers` with the other public tools: their own step of .ci/run, which runs
`npm ci --prefix tests/peers` first.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.factories import unique_email
from tests.support.peers import PEERS, allow_list_server, node_or_skip, run, tool, unexpected_errors, vouchsafe
from tests.support.processes import serving

pytestmark = pytest.mark.peers


def apollo(node: str, *args: str) -> None:
    ran = run([node, str(PEERS / "apollo.mjs"), *args], cwd=PEERS)
    print(ran.stdout)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "every check passed" in ran.stdout


def test_apollo_apq_registers_a_document_once_then_sends_its_hash(tmp_path: Path) -> None:
    node = node_or_skip("@apollo/client")
    data, log = tmp_path / "data", tmp_path / "serve.log"
    with serving(data, log) as http:
        apollo(node, "apq", f"{http.base_url}/graphql", unique_email("apq"))
    listed = vouchsafe("documents", "list", data=data)
    # Stored in the database, so every instance knows them: the HTTP ones (the subscription went by WebSocket).
    assert listed.count("\tapq\t") == 5, listed
    assert not unexpected_errors(log), unexpected_errors(log)[:20]


def test_apollo_safelisting_runs_the_manifest_and_refuses_the_rest(tmp_path: Path) -> None:
    node = node_or_skip("@apollo/generate-persisted-query-manifest")
    manifest = tmp_path / "persisted-query-manifest.json"
    config = tmp_path / "persisted-query-manifest.config.json"
    config.write_text(json.dumps({"documents": ["spa/**/*.js"], "output": str(manifest)}))
    generated = run([tool("generate-persisted-query-manifest"), "-c", str(config)], cwd=PEERS)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    written = json.loads(manifest.read_text())
    assert written["format"] == "apollo-persisted-query-manifest"
    assert len(written["operations"]) == 6

    data, log = tmp_path / "data", tmp_path / "serve.log"
    with allow_list_server(manifest, 6, data, log) as http:
        apollo(node, "safelist", f"{http.base_url}/graphql", unique_email("safelist"), str(manifest))
    assert not unexpected_errors(log), unexpected_errors(log)[:20]
