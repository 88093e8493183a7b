"""The `vouchsafe documents` commands: trusted documents loaded from manifests, listed, and collected.

`collect` gathers the project's own documents from the places they live (the
redemption page, `documents/**/*.graphql`, the console's `documents.js`, any
`*.graphql` file or generated `persisted-documents.json` under `console/`, the demo's
sign-in) into one manifest, so a
deployment in allow-list mode loads exactly what its own faces send.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from settings import Settings

WithDb = Callable[[Settings, Callable[[], Awaitable[Any]]], Any]

ROOT = Path(__file__).resolve().parent
REDEEM_PAGE = ROOT / "templates" / "redeem" / "index.html"
DOCUMENTS_DIR = ROOT / "documents"
CONSOLE_DIR = ROOT / "console"  # the partner console's sources, when the project has one
CONSOLE_DOCUMENTS = CONSOLE_DIR / "documents.js"  # every document the console sends, one export each
MANIFEST = DOCUMENTS_DIR / "manifest.json"

_JS_STRING = r'"(?:[^"\\\n]|\\.)*"'
_JS_TERM = rf"(?:{_JS_STRING}|[A-Z][A-Z0-9_]*)"
# `var NAME = "..." + OTHER + "...";`: how the redemption page writes its documents.
_JS_VAR = re.compile(rf"\bvar ([A-Z][A-Z0-9_]*) = ({_JS_TERM}(?:\s*\+\s*{_JS_TERM})*);")
_OPERATION = re.compile(r"\s*(query|mutation|subscription)\b")


def redeem_page_documents(html: str) -> list[str]:
    """The redemption page's documents, as its script builds them (string constants joined with +)."""
    values: dict[str, str] = {}
    for name, expression in _JS_VAR.findall(html):
        parts = re.findall(_JS_TERM, expression)
        try:
            values[name] = "".join(json.loads(p) if p.startswith('"') else values[p] for p in parts)
        except KeyError:
            continue  # built from something other than string constants: not a document
    return [text for text in values.values() if _OPERATION.match(text)]


# `[export] const NAME = `...${OTHER}...`;` (or a "..." string): how the console's documents.js writes them.
_JS_CONST = re.compile(r'(?:export\s+)?const\s+([A-Za-z_]\w*)\s*=\s*(`[^`\\]*`|"(?:[^"\\\n]|\\.)*")\s*;')
_INTERPOLATION = re.compile(r"\$\{\s*([A-Za-z_]\w*)\s*\}")


def console_module_documents(source: str) -> list[str]:
    """The documents an ES module exports as string constants (template literals over earlier constants)."""
    values: dict[str, str] = {}
    for name, literal in _JS_CONST.findall(source):
        if literal.startswith('"'):
            values[name] = json.loads(literal)
            continue
        try:
            values[name] = _INTERPOLATION.sub(lambda m: values[m.group(1)], literal[1:-1])
        except KeyError:
            continue  # interpolates something other than an earlier constant: not a document
    return [text for text in values.values() if _OPERATION.match(text)]


def _graphql_files(folder: Path) -> Iterable[Path]:
    return sorted(p for p in folder.rglob("*.graphql") if "node_modules" not in p.parts)


def collect() -> dict[str, str]:
    """Every document the project's own faces send, as a manifest: sha256 hex -> text."""
    from cli import DEMO_SIGN_IN
    from services.trusted_documents import document_hash, parse_manifest

    texts = [*redeem_page_documents(REDEEM_PAGE.read_text(encoding="utf-8")), DEMO_SIGN_IN]
    texts += [path.read_text(encoding="utf-8") for path in _graphql_files(DOCUMENTS_DIR)]
    if CONSOLE_DIR.is_dir():
        texts += [path.read_text(encoding="utf-8") for path in _graphql_files(CONSOLE_DIR)]
        if CONSOLE_DOCUMENTS.is_file():
            texts += console_module_documents(CONSOLE_DOCUMENTS.read_text(encoding="utf-8"))
        for generated in sorted(CONSOLE_DIR.rglob("persisted-documents.json")):
            if "node_modules" not in generated.parts:
                texts += [e.text for e in parse_manifest(json.loads(generated.read_text(encoding="utf-8")))]
    return {document_hash(text): text for text in sorted(set(texts))}


def invalid_documents(texts: Iterable[str]) -> list[tuple[str, str]]:
    """(document's first line, why) for each document the schema refuses."""
    from schema import schema
    from schema.prepared import parsed

    problems: list[tuple[str, str]] = []
    for text in texts:
        head = text.strip().splitlines()[0][:80]
        problems += [(head, error.message) for error in parsed(schema, text)[1]]
    return problems


def cmd_collect(settings: Settings | None, args: argparse.Namespace) -> int:
    manifest = collect()
    problems = invalid_documents(manifest.values())
    for head, why in problems:
        print(f"vouchsafe: {head}: {why}", file=sys.stderr)
    if problems:
        return 1
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}: {len(manifest)} documents")
    return 0


def cmd_load(with_db: WithDb, settings: Settings, args: argparse.Namespace) -> int:
    from services import trusted_documents

    path = Path(args.manifest)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"vouchsafe: cannot read {path} as JSON: {exc}", file=sys.stderr)
        return 1
    entries = trusted_documents.parse_manifest(data)
    problems = invalid_documents(e.text for e in entries)
    for head, why in problems:
        print(f"vouchsafe: {head}: {why}", file=sys.stderr)
    if problems:
        print("vouchsafe: nothing loaded: the schema refuses the documents above", file=sys.stderr)
        return 1
    result = with_db(settings, lambda: trusted_documents.load_manifest(entries, source=f"manifest:{path.name}"))
    print(f"{result.added} documents added, {result.known} already known ({len(entries)} in {path.name})")
    return 0


def cmd_list(with_db: WithDb, settings: Settings, args: argparse.Namespace) -> int:
    from services import trusted_documents

    rows = with_db(settings, trusted_documents.all_documents)
    for row in rows:
        head = " ".join(row.text.split())[:60]
        print(f"sha256:{row.hash}\t{row.client_id or '-'}\t{row.source}\t{row.created_at:%Y-%m-%d %H:%M}\t{head}")
    print(f"{len(rows)} documents")
    return 0


def add_parser(sub: Any, with_db: WithDb) -> None:
    """`documents load`, `documents list` and `documents collect`."""
    documents = sub.add_parser(
        "documents", help="trusted (persisted) GraphQL documents: docs/trusted-documents.md"
    ).add_subparsers(dest="action", required=True)
    load = documents.add_parser("load", help="store a manifest's documents (Relay, GraphQL Code Generator, Apollo)")
    load.add_argument("manifest", help="a JSON file: {id: document text}, ids sha256:<hex>, hex or the client's own")
    load.set_defaults(func=functools.partial(cmd_load, with_db))
    documents.add_parser("list", help="list the stored documents").set_defaults(
        func=functools.partial(cmd_list, with_db)
    )
    gather = documents.add_parser("collect", help="write the manifest of the project's own documents")
    gather.add_argument("--output", default=str(MANIFEST.relative_to(ROOT)), help="a file, or - for stdout")
    gather.set_defaults(func=cmd_collect, no_settings=True)
