"""Trusted documents for tests: stored as `vouchsafe documents load` stores them, sent by id."""

from __future__ import annotations

from typing import Any

import httpx

from services import trusted_documents
from services.trusted_documents import document_hash
from tests.support.api import Api


async def store(*texts: str, relay_ids: dict[str, str] | None = None) -> None:
    """The documents stored under their sha256 (and, for `relay_ids`, under a client id of their own)."""
    manifest: dict[str, str] = {document_hash(t): t for t in texts}
    manifest.update(relay_ids or {})
    await trusted_documents.load_manifest(trusted_documents.parse_manifest(manifest), source="manifest:test.json")


async def post(api: Api, body: dict[str, Any], token: str | None = None, accept: str | None = None) -> httpx.Response:
    """A raw POST /graphql (any body: documentId, APQ extensions), answered whatever its status."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if accept:
        headers["Accept"] = accept
    return await api.http.post("/graphql", json=body, headers=headers)
