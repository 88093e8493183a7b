"""The committed schema.graphql is the schema the code builds."""

from __future__ import annotations

from pathlib import Path

from schema import schema

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schema.graphql"


def test_committed_sdl_matches_the_code() -> None:
    committed = SCHEMA_FILE.read_text()
    assert "type Query" in committed
    assert schema.as_str() + "\n" == committed, (
        "schema.graphql is out of date with the code: run `uv run vouchsafe export-schema` and commit the result"
    )
