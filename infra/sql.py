"""Hand-written SQL for the few hot reads: placeholders and values in the current store's dialect."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient


class Sql:
    """Placeholders and values in the current store's dialect."""

    def __init__(self, conn: BaseDBAsyncClient) -> None:
        self.postgres = conn.capabilities.dialect == "postgres"
        self.values: list[Any] = []

    def param(self, value: Any) -> str:
        if isinstance(value, datetime) and not self.postgres:
            value = str(value)  # how Tortoise stores datetimes in SQLite: comparable as text in UTC
        self.values.append(value)
        return f"${len(self.values)}" if self.postgres else "?"

    def ids(self, values: Sequence[int]) -> str:
        return ", ".join(self.param(int(v)) for v in values) or "NULL"
