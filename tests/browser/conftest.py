"""The browser every page test drives (tests/support/browser.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser

from tests.support.browser import chromium_browser


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium_browser() as launched:
        yield launched
