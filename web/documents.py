"""Trusted documents at the edge: a request's document found by id (APQ, `documentId`), or refused.

Two protocols name a stored document instead of sending its text:
- Apollo's automatic persisted queries: `extensions.persistedQuery {version: 1,
  sha256Hash}`. The hash alone, unknown, gets PERSISTED_QUERY_NOT_FOUND, on which
  Apollo Client sends the hash again with the text; hash and text (the hash checked)
  run the text, and in development store it, so every instance knows it next time.
- The GraphQL-over-HTTP draft's (and Relay's) `documentId`: `sha256:<hex>`, bare hex,
  or a manifest's own id; POST, or GET for queries.
In allow-list mode (VOUCHSAFE_TRUSTED_DOCUMENTS=only) nothing but a stored document
runs: an unknown id, an unknown text and an APQ registration are refused alike.
Documents are content-addressed, so each instance keeps the ones it met, parsed and
validated (schema.prepared), in a bounded LRU and asks the database only on a miss.
The project's own documents (documents/manifest.json: the console's, the redemption
page's, staff's) ship with the code, so every instance knows them without a database row.
"""

from __future__ import annotations

import hmac
import json
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from schema import Schema
from schema.prepared import PreparedDocument, prepare, printed_form
from services import trusted_documents
from services.trusted_documents import SHA256_HEX, document_hash
from settings import Settings
from web.graphql_http import GRAPHQL_RESPONSE_JSON, GraphQLParams, HTTPRefusal

NOT_FOUND = "PersistedQueryNotFound"  # the message Apollo Client matches, beside the code
REQUIRED = (
    "This server runs only its trusted documents: send a stored document's id (`documentId`,"
    " or `extensions.persistedQuery`); this document is not one of them."
)
OWN_MANIFEST = Path(__file__).resolve().parent.parent / "documents" / "manifest.json"
MAX_ALIASES = 4096  # client ids (Relay's md5s, app names) -> hash, kept beside the LRU of documents


@dataclass(frozen=True)
class Resolved:
    """The request's parameters with its document's text; `prepared` when it may skip parse and validation."""

    params: GraphQLParams
    prepared: PreparedDocument | None

    @property
    def text(self) -> str:
        assert self.params.query is not None
        return self.params.query


def own_documents(path: Path) -> dict[str, str]:
    """The project's own documents, sha256 -> text: released with the code, so trusted like it."""
    if not path.is_file():
        return {}  # a deployment without the project's faces' manifest: the database alone decides
    entries = trusted_documents.parse_manifest(json.loads(path.read_text(encoding="utf-8")))
    # Each also as graphql-core prints it: what a client that reprints its documents sends (gql).
    entries += trusted_documents.reprinted(entries, printed_form)
    return {entry.hash: entry.text for entry in entries}


def _not_found(media: str, code: str, message: str) -> HTTPRefusal:
    # application/json answers a well-formed request with 200 (GraphQL-over-HTTP; Apollo Client
    # retries on the code either way); the newer media type says what went wrong with 404.
    return HTTPRefusal(404 if media == GRAPHQL_RESPONSE_JSON else 200, message, code)


class DocumentStore:
    """Stored documents as the edge sees them: by id or hash, prepared once per process."""

    def __init__(self, schema: Schema, settings: Settings) -> None:
        self.schema = schema
        self.only = settings.trusted_documents_only
        self.register_in_db = not settings.production  # production's APQ stays in the process
        self._aliases: OrderedDict[str, str] = OrderedDict()
        self.own = own_documents(OWN_MANIFEST)

    async def by_hash(self, digest: str) -> tuple[str, PreparedDocument | None] | None:
        """The text and prepared form of a stored (or, here, already met) document."""
        entry = self.schema.prepared.get(digest)
        if entry is not None:
            return entry
        if digest in self.own:
            return self._remember(digest, self.own[digest])
        row = await trusted_documents.find(digest)
        return None if row is None else self._remember(row.hash, row.text)

    async def by_id(self, document_id: str) -> tuple[str, PreparedDocument | None] | None:
        digest = trusted_documents.hash_of_id(document_id) or self._aliases.get(document_id)
        if digest is not None:
            return await self.by_hash(digest)
        row = await trusted_documents.find(document_id)
        if row is None:
            return None
        self._aliases[document_id] = row.hash
        while len(self._aliases) > MAX_ALIASES:
            self._aliases.popitem(last=False)
        return self._remember(row.hash, row.text)

    def _remember(self, digest: str, text: str) -> tuple[str, PreparedDocument | None]:
        entry = (text, prepare(self.schema, digest, text))
        self.schema.prepared.put(digest, *entry)
        return entry

    async def resolve(self, params: GraphQLParams, media: str) -> Resolved:
        """The document a request runs, or an HTTPRefusal saying why none."""
        if params.document_id is not None:
            if params.query is not None:
                raise HTTPRefusal(400, "Send either `query` or `documentId`, not both.")
            entry = await self.by_id(params.document_id)
            if entry is None:
                message = f"No stored document has the id {params.document_id[:80]!r}."
                raise _not_found(media, "PERSISTED_DOCUMENT_NOT_FOUND", message)
            return Resolved(replace(params, query=entry[0]), entry[1])
        persisted = (params.extensions or {}).get("persistedQuery")
        if persisted is not None:
            return await self._apq(params, persisted, media)
        assert params.query is not None
        digest = document_hash(params.query)
        entry = self.schema.prepared.get(digest) if not self.only else await self.by_hash(digest)
        if entry is None and self.only:
            raise HTTPRefusal(403, REQUIRED, "PERSISTED_QUERY_REQUIRED")
        return Resolved(params, entry[1] if entry else None)

    async def _apq(self, params: GraphQLParams, persisted: Any, media: str) -> Resolved:
        digest = persisted.get("sha256Hash") if isinstance(persisted, dict) else None
        if not isinstance(persisted, dict) or persisted.get("version") != 1:
            raise HTTPRefusal(400, "Unsupported persisted query version: send version 1.", "PERSISTED_QUERY_INVALID")
        if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
            raise HTTPRefusal(
                400, "`sha256Hash` must be 64 lower-case hexadecimal characters.", "PERSISTED_QUERY_INVALID"
            )
        if params.query is None:
            entry = await self.by_hash(digest)
            if entry is None:
                raise _not_found(media, "PERSISTED_QUERY_NOT_FOUND", NOT_FOUND)
            return Resolved(replace(params, query=entry[0]), entry[1])
        if not hmac.compare_digest(document_hash(params.query), digest):
            raise HTTPRefusal(400, "provided sha does not match query", "PERSISTED_QUERY_HASH_MISMATCH")
        entry = await self.by_hash(digest)
        if entry is not None:
            return Resolved(params, entry[1])
        if self.only:
            raise HTTPRefusal(403, REQUIRED, "PERSISTED_QUERY_REQUIRED")
        prepared = prepare(self.schema, digest, params.query)
        if prepared is None:
            return Resolved(params, None)  # not stored: the generic path reports its errors
        if self.register_in_db:
            await trusted_documents.register(text=params.query)
        self.schema.prepared.put(digest, params.query, prepared)
        return Resolved(params, prepared)
