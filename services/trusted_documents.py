"""Trusted documents: the GraphQL operations clients ship at build time, stored by their sha256.

A document is content-addressed: its id is the lower-case hex sha256 of its exact
UTF-8 text (the GraphQL-over-HTTP draft's `sha256:` document identifier, Apollo's
APQ hash), so a stored row never changes and every instance may cache it forever.
Manifests name documents by that hash (GraphQL Code Generator's persisted-documents
preset, Apollo's manifest) or by an id of their own (Relay's md5, an app's names),
kept as `client_id`.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from infra import clock
from models import TrustedDocument
from services.errors import DomainError, ErrorCode, invalid

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# The draft's custom document identifier (unreserved characters), or its `x-` prefixed form.
CUSTOM_ID = re.compile(r"(?:x-[A-Za-z0-9._~-]+:)?[A-Za-z0-9._~-]{1,200}")
MAX_DOCUMENT_CHARS = 100_000  # far above the token limit's reach; a manifest is not a dump of anything
PRINTED = " (printed)"  # the source's suffix on a document stored as a reprinting client sends another


def document_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def hash_of_id(document_id: str) -> str | None:
    """The sha256 a document id names (`sha256:<hex>` or bare hex), or None for a custom id."""
    payload = document_id.removeprefix("sha256:")
    return payload if SHA256_HEX.fullmatch(payload) else None


@dataclass(frozen=True)
class ManifestEntry:
    hash: str
    text: str
    client_id: str | None


@dataclass(frozen=True)
class LoadResult:
    added: int
    known: int
    printed: int = 0  # besides `added`: the same documents stored as a reprinting client sends them


def parse_manifest(data: Any) -> list[ManifestEntry]:
    """Entries of a manifest: `{id: text}` (Relay, GraphQL Code Generator) or Apollo's operations list.

    An id that is a sha256 (bare or `sha256:`) must be the hash of its text; any other id
    is the client's own and is kept beside the hash.
    """
    if isinstance(data, dict) and data.get("format") == "apollo-persisted-query-manifest":
        operations = data.get("operations")
        if not isinstance(operations, list):
            raise invalid("manifest", "An Apollo manifest needs an `operations` list.")
        pairs = [(op.get("id"), op.get("body")) for op in operations if isinstance(op, dict)]
        if len(pairs) != len(operations):
            raise invalid("manifest", "Each Apollo manifest operation must be an object with `id` and `body`.")
    elif isinstance(data, dict):
        pairs = list(data.items())
    else:
        raise invalid("manifest", 'A manifest is a JSON object of document id to text: {"sha256:…": "query …"}.')
    entries: dict[str, ManifestEntry] = {}
    for key, text in pairs:
        if not isinstance(key, str) or not isinstance(text, str) or not text.strip():
            raise invalid("manifest", f"Entry {key!r}: the id and the document must be non-empty strings.")
        if len(text) > MAX_DOCUMENT_CHARS:
            raise invalid("manifest", f"Entry {key!r}: documents are limited to {MAX_DOCUMENT_CHARS} characters.")
        digest = document_hash(text)
        named = hash_of_id(key)
        if named is not None and named != digest:
            raise invalid("manifest", f"Entry {key!r}: the id is not the sha256 of its document ({digest}).")
        if named is None and not CUSTOM_ID.fullmatch(key):
            raise invalid("manifest", f"Entry {key!r}: not a document id (sha256:<hex>, or letters, digits, -._~).")
        entries[key] = ManifestEntry(digest, text, None if named else key)
    return list(entries.values())


def reprinted(entries: list[ManifestEntry], printed_form: Callable[[str], str | None]) -> list[ManifestEntry]:
    """Each entry's other text as `printed_form` gives it, when it has one and is not an entry already."""
    seen = {entry.hash for entry in entries}
    extra: dict[str, ManifestEntry] = {}
    for entry in entries:
        text = printed_form(entry.text)
        if text is None:
            continue
        digest = document_hash(text)
        if digest not in seen:
            extra[digest] = ManifestEntry(digest, text, None)
    return list(extra.values())


async def load_manifest(
    entries: list[ManifestEntry], *, source: str, printed: list[ManifestEntry] | None = None
) -> LoadResult:
    """Store a manifest's documents in one transaction; known ones stay as they are; ids stay unique.

    `printed`: the same documents as a client that reprints them sends them (`reprinted`),
    trusted as well, under `<source> (printed)`; the new ones are counted in `printed`.
    """
    added = known = printed_added = 0
    async with in_transaction() as conn:
        for entry in entries:
            row = await TrustedDocument.filter(hash=entry.hash).using_db(conn).first()
            if entry.client_id is not None:
                other = await TrustedDocument.filter(client_id=entry.client_id).using_db(conn).first()
                if other is not None and other.hash != entry.hash:
                    raise DomainError(
                        ErrorCode.INVALID, f"The id {entry.client_id!r} already names another document.", "manifest"
                    )
            if row is None:
                await _store(entry, source, conn)
                added += 1
                continue
            known += 1
            if entry.client_id is not None and row.client_id is None:
                await TrustedDocument.filter(hash=entry.hash).using_db(conn).update(client_id=entry.client_id)
        for entry in printed or []:
            if not await TrustedDocument.filter(hash=entry.hash).using_db(conn).exists():
                await _store(entry, f"{source[:189]}{PRINTED}", conn)
                printed_added += 1
    return LoadResult(added=added, known=known, printed=printed_added)


async def _store(entry: ManifestEntry, source: str, conn: BaseDBAsyncClient) -> None:
    await TrustedDocument.create(
        hash=entry.hash,
        text=entry.text,
        client_id=entry.client_id,
        source=source[:200],
        created_at=clock.now(),
        using_db=conn,
    )


async def register(*, text: str, source: str = "apq") -> None:
    """Store one document a client sent with its hash (development's APQ); a second store is harmless."""
    if len(text) > MAX_DOCUMENT_CHARS:
        return
    # IntegrityError: the same document, stored by another request or instance first.
    with contextlib.suppress(IntegrityError):
        await TrustedDocument.create(hash=document_hash(text), text=text, source=source, created_at=clock.now())


def _named(document_id: str) -> QuerySet[TrustedDocument] | None:
    """The rows a `documentId` can name: by its sha256 (bare or prefixed), else by the client's id; None: no id."""
    digest = hash_of_id(document_id)
    if digest is not None:
        return TrustedDocument.filter(hash=digest)
    return TrustedDocument.filter(client_id=document_id) if CUSTOM_ID.fullmatch(document_id) else None


async def find(document_id: str) -> TrustedDocument | None:
    """The stored document a `documentId` names."""
    named = _named(document_id)
    return None if named is None else await named.first()


async def remove(document_id: str, printed_form: Callable[[str], str | None]) -> list[str]:
    """Remove the document an id names and the printed form `load_manifest` stored for it; the hashes removed.

    The printed form stays while another stored document prints to it too; one transaction.
    """
    named = _named(document_id)
    if named is None:
        return []
    async with in_transaction() as conn:
        row = await named.using_db(conn).select_for_update().first()
        if row is None:
            return []
        doomed = [row.hash]
        printed = printed_form(row.text)
        if printed is not None:
            twin = await TrustedDocument.filter(hash=document_hash(printed)).using_db(conn).first()
            if twin is not None and twin.source.endswith(PRINTED):
                others = TrustedDocument.exclude(hash__in=[row.hash, twin.hash]).using_db(conn)
                texts = await others.values_list("text", flat=True)
                if not any(printed_form(str(text)) == printed for text in texts):
                    doomed.append(twin.hash)
        await TrustedDocument.filter(hash__in=doomed).using_db(conn).delete()
    return doomed


async def all_documents() -> list[TrustedDocument]:
    return await TrustedDocument.all().order_by("created_at", "hash")
