"""The time, as services see it: one place, so tests can move it (day 30 vs day 31)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

_offset = timedelta(0)


def now() -> datetime:
    return datetime.now(UTC) + _offset


@contextmanager
def shifted(delta: timedelta) -> Iterator[None]:
    """Run a block as if `delta` had passed (a controllable clock for rules over time)."""
    global _offset
    previous, _offset = _offset, _offset + delta
    try:
        yield
    finally:
        _offset = previous
