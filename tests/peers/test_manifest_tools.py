"""Issue 25's manifest formats as the real tools write them, loaded and run by id in allow-list mode.

- GraphQL Code Generator's `client` preset with `persistedDocuments` (sha256): it reads the
  SPA's sources (spa/operations.js, the Apollo SPA's gql tags) and writes
  `persisted-documents.json`, `{"sha256:<hex>": text}`.
- The Relay compiler with `persistConfig` (md5): it reads relay/src (copied, since it writes
  its artifacts beside the sources) and writes `{<md5>: text}`; the ids are Relay's own.

Each manifest is loaded with `vouchsafe documents load` into an allow-list server, and its
documents are sent as those clients send them: `{"documentId": id, "variables": ...}` over
POST, and queries by GET. Marked `peers`: run by their own step of .ci/run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.factories import PASSWORD, unique_email
from tests.support.peers import PEERS, allow_list_server, node_or_skip, run, tool, unexpected_errors

pytestmark = pytest.mark.peers

ROOT = PEERS.parents[1]
GRAPHQL_RESPONSE = "application/graphql-response+json"


def by_id(http: httpx.Client, document_id: str, variables: dict[str, Any], token: str | None = None) -> Any:
    headers = {"Accept": GRAPHQL_RESPONSE, **({"Authorization": f"Bearer {token}"} if token else {})}
    response = http.post("/graphql", json={"documentId": document_id, "variables": variables}, headers=headers)
    assert response.status_code == 200, response.text
    assert "errors" not in response.json(), response.text
    return response.json()["data"]


def id_of(manifest: dict[str, str], operation: str) -> str:
    (found,) = [key for key, text in manifest.items() if text.lstrip().split("(")[0].split()[1] == operation]
    return found


def signed_in(http: httpx.Client, sign_up: str, sign_in: str) -> tuple[str, str]:
    """A new partner signed up and in through the manifest's documents: their email and token."""
    email = unique_email("manifest")
    account = {"email": email, "password": PASSWORD, "accountName": "Manifest Reseller", "locale": "en"}
    assert by_id(http, sign_up, {"input": account})["signUp"]["errors"] == []
    token = by_id(http, sign_in, {"input": {"email": email, "password": PASSWORD}})["signIn"]["token"]
    return email, token


def runs_by_id(http: httpx.Client, manifest: dict[str, str], names: dict[str, str]) -> None:
    """Every kind of operation of the manifest by its id: mutations by POST, queries by POST and GET."""
    email, token = signed_in(http, id_of(manifest, names["signUp"]), id_of(manifest, names["signIn"]))
    products = by_id(http, id_of(manifest, names["products"]), {})["products"]
    assert products
    assert {"code", "name"} <= products[0].keys()
    viewer = id_of(manifest, names["viewer"])
    assert by_id(http, viewer, {}, token)["viewer"]["user"]["email"] == email
    got = http.get(
        "/graphql",
        params={"documentId": viewer},
        headers={"Accept": GRAPHQL_RESPONSE, "Authorization": f"Bearer {token}"},
    )
    assert got.status_code == 200, got.text
    assert got.json()["data"]["viewer"]["user"]["email"] == email
    # The allow-list holds: a document the manifest does not have is refused, by text or by id.
    refused = http.post("/graphql", json={"query": "{ products { code } }"}, headers={"Accept": GRAPHQL_RESPONSE})
    assert refused.status_code == 403, refused.text
    assert refused.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_REQUIRED"
    unknown = http.post("/graphql", json={"documentId": "sha256:" + "0" * 64}, headers={"Accept": GRAPHQL_RESPONSE})
    assert unknown.status_code == 404, unknown.text


def test_graphql_codegen_persisted_documents_run_by_id(tmp_path: Path) -> None:
    node_or_skip("@graphql-codegen/cli")
    out = tmp_path / "gql"
    preset = {"preset": "client", "presetConfig": {"persistedDocuments": {"hashAlgorithm": "sha256"}}}
    config = {"schema": str(ROOT / "schema.graphql"), "documents": "spa/**/*.js", "generates": {f"{out}/": preset}}
    (tmp_path / "codegen.json").write_text(json.dumps(config))
    generated = run([tool("graphql-codegen"), "--config", str(tmp_path / "codegen.json")], cwd=PEERS)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    manifest_path = out / "persisted-documents.json"
    manifest = json.loads(manifest_path.read_text())
    assert len(manifest) == 6, manifest
    assert all(key.startswith("sha256:") for key in manifest), manifest

    data, log = tmp_path / "data", tmp_path / "serve.log"
    with allow_list_server(manifest_path, 6, data, log) as http:
        names = {"signUp": "SignUp", "signIn": "SignIn", "products": "Products", "viewer": "Viewer"}
        runs_by_id(http, manifest, names)
    assert not unexpected_errors(log), unexpected_errors(log)[:20]


def test_relay_compiler_persisted_queries_run_by_their_md5_ids(tmp_path: Path) -> None:
    node_or_skip("relay-compiler")
    project = tmp_path / "relay"
    shutil.copytree(PEERS / "relay", project)
    manifest_path = tmp_path / "relay-persisted.json"
    manifest_path.write_text("{}")  # the compiler adds to the file it is given, which must exist
    persist = {"file": str(manifest_path), "algorithm": "MD5"}
    config = {
        "src": "./src",
        "schema": str(ROOT / "schema.graphql"),
        "language": "javascript",
        "persistConfig": persist,
    }
    (project / "relay.config.json").write_text(json.dumps(config))
    compiled = run([tool("relay-compiler")], cwd=project)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    manifest = json.loads(manifest_path.read_text())
    assert len(manifest) == 4, manifest
    # Relay's ids are the md5 of the text: kept as the documents' own ids, not sha256.
    assert all(key == hashlib.md5(text.encode()).hexdigest() for key, text in manifest.items()), manifest

    data, log = tmp_path / "data", tmp_path / "serve.log"
    with allow_list_server(manifest_path, 4, data, log) as http:
        names = {
            "signUp": "PartnerSignUpMutation",
            "signIn": "PartnerSignInMutation",
            "products": "PartnerProductsQuery",
            "viewer": "PartnerViewerQuery",
        }
        runs_by_id(http, manifest, names)
    assert not unexpected_errors(log), unexpected_errors(log)[:20]
