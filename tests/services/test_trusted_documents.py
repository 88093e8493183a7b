"""Trusted documents: manifests in the formats clients write, hashes verified, loading idempotent."""

from __future__ import annotations

import secrets

import pytest

from models import TrustedDocument
from services import trusted_documents as docs
from services.errors import DomainError


def _query(tag: str) -> str:
    return f"query Tag{tag} {{ viewer {{ user {{ email }} }} }}"


class TestParseManifest:
    def test_codegen_keys_are_bare_or_prefixed_sha256_of_the_text(self) -> None:
        a, b = _query("A"), _query("B")
        entries = docs.parse_manifest({docs.document_hash(a): a, f"sha256:{docs.document_hash(b)}": b})
        assert [(e.hash, e.client_id) for e in entries] == [
            (docs.document_hash(a), None),
            (docs.document_hash(b), None),
        ]

    def test_a_sha256_id_that_is_not_the_texts_hash_refuses_the_manifest(self) -> None:
        with pytest.raises(DomainError, match="not the sha256"):
            docs.parse_manifest({docs.document_hash("query { a }"): "query { b }"})

    def test_relay_ids_are_kept_as_the_clients_own(self) -> None:
        text = _query("Relay")
        (entry,) = docs.parse_manifest({"5f1c0b9c9f1d4c7b8e2a3d4f5a6b7c8d": text})
        assert entry.hash == docs.document_hash(text)
        assert entry.client_id == "5f1c0b9c9f1d4c7b8e2a3d4f5a6b7c8d"

    def test_apollo_manifest(self) -> None:
        text = _query("Apollo")
        manifest = {
            "format": "apollo-persisted-query-manifest",
            "version": 1,
            "operations": [{"id": docs.document_hash(text), "name": "TagApollo", "type": "query", "body": text}],
        }
        assert [e.text for e in docs.parse_manifest(manifest)] == [text]

    @pytest.mark.parametrize(
        "manifest",
        [[], "x", {"id": 3}, {"id": ""}, {"bad id!": "query { a }"}, {"other:prefix": "query { a }"}],
    )
    def test_malformed_manifests_are_refused(self, manifest: object) -> None:
        with pytest.raises(DomainError):
            docs.parse_manifest(manifest)

    def test_document_ids(self) -> None:
        digest = docs.document_hash("query { a }")
        assert docs.hash_of_id(digest) == digest
        assert docs.hash_of_id(f"sha256:{digest}") == digest
        assert docs.hash_of_id(f"sha256:{digest.upper()}") is None
        assert docs.hash_of_id("relay-id") is None


@pytest.mark.usefixtures("db")
class TestLoadManifest:
    async def test_loading_twice_adds_once_and_find_reads_both_ids(self) -> None:
        tag = secrets.token_hex(4)
        text = _query(tag)
        entries = docs.parse_manifest({f"relay-{tag}": text})
        assert await docs.load_manifest(entries, source="manifest:a.json") == docs.LoadResult(added=1, known=0)
        assert await docs.load_manifest(entries, source="manifest:a.json") == docs.LoadResult(added=0, known=1)
        by_hash = await docs.find(f"sha256:{docs.document_hash(text)}")
        by_id = await docs.find(f"relay-{tag}")
        assert by_hash is not None
        assert by_id is not None
        assert by_hash.text == by_id.text == text
        assert await docs.find(f"relay-{tag}-other") is None
        assert await docs.find("no:such id") is None

    async def test_a_client_id_never_names_two_documents(self) -> None:
        tag = secrets.token_hex(4)
        await docs.load_manifest(docs.parse_manifest({f"id-{tag}": _query(tag)}), source="manifest:a.json")
        other = docs.parse_manifest(
            {f"id-{tag}": _query(tag + "x"), docs.document_hash(_query("Z" + tag)): _query("Z" + tag)}
        )
        with pytest.raises(DomainError, match="already names another document"):
            await docs.load_manifest(other, source="manifest:b.json")
        # One transaction: the manifest's other document was not stored either.
        assert await TrustedDocument.filter(hash=docs.document_hash(_query("Z" + tag))).count() == 0

    async def test_register_is_harmless_twice(self) -> None:
        text = _query(secrets.token_hex(4))
        await docs.register(text=text)
        await docs.register(text=text)
        row = await TrustedDocument.get(hash=docs.document_hash(text))
        assert row.source == "apq"
        assert row.client_id is None

    async def test_printed_forms_are_stored_beside_the_documents_and_counted_apart(self) -> None:
        tag = secrets.token_hex(4)
        written, printed = f"query Tag{tag} {{\n  viewer {{ user {{ email }} }}\n}}\n", _query(tag)
        # A printed form that is another entry of the manifest is not stored twice.
        entries = docs.parse_manifest(
            {f"mine-{tag}": written, docs.document_hash(_query("P" + tag)): _query("P" + tag)}
        )
        extra = docs.reprinted(entries, {written: printed}.get)
        assert [(e.hash, e.client_id) for e in extra] == [(docs.document_hash(printed), None)]
        assert docs.reprinted([*entries, *extra], {written: printed}.get) == []
        loaded = await docs.load_manifest(entries, source="manifest:a.json", printed=extra)
        assert loaded == docs.LoadResult(added=2, known=0, printed=1)
        row = await TrustedDocument.get(hash=docs.document_hash(printed))
        assert (row.text, row.client_id, row.source) == (printed, None, "manifest:a.json (printed)")
        again = await docs.load_manifest(entries, source="manifest:a.json", printed=extra)
        assert again == docs.LoadResult(added=0, known=2, printed=0)

    async def test_remove_takes_the_printed_form_along_unless_another_document_prints_to_it(self) -> None:
        tag = secrets.token_hex(4)
        printed = _query(tag)
        one, two = printed.replace("{ ", "{\n"), printed.replace(" }", "\n}")
        forms = {one: printed, two: printed}.get
        entries = docs.parse_manifest({f"one-{tag}": one, f"two-{tag}": two})
        await docs.load_manifest(entries, source="manifest:a.json", printed=docs.reprinted(entries, forms))
        assert await docs.remove(f"one-{tag}", forms) == [docs.document_hash(one)]
        # `two` still prints to it: a gql client of `two` keeps working
        assert await TrustedDocument.exists(hash=docs.document_hash(printed))
        removed = await docs.remove(f"sha256:{docs.document_hash(two)}", forms)
        assert removed == [docs.document_hash(two), docs.document_hash(printed)]
        assert not await TrustedDocument.filter(hash__in=[e.hash for e in entries] + removed).exists()
        assert await docs.remove(f"two-{tag}", forms) == []

    async def test_remove_leaves_a_document_loaded_in_its_own_right(self) -> None:
        tag = secrets.token_hex(4)
        written, printed = _query(tag).replace("{ ", "{\n"), _query(tag)
        # A manifest that holds both forms: the printed one is a document of its own, not a printed form.
        entries = docs.parse_manifest({f"w-{tag}": written, f"p-{tag}": printed})
        await docs.load_manifest(
            entries, source="manifest:a.json", printed=docs.reprinted(entries, {written: printed}.get)
        )
        assert await docs.remove(f"w-{tag}", {written: printed}.get) == [docs.document_hash(written)]
        assert await docs.find(f"p-{tag}") is not None
