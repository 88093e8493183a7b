"""The time, as services see it: one call, so every rule over time reads the same clock.

Tests move it with time-machine (tests/support/running.py: `shifted`), which moves the
process's wall clock itself; nothing here knows about tests.
"""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)
