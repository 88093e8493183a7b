"""GraphiQL works offline: a real browser, every request to another host refused, against a real `vouchsafe serve`.

Debian's chromium, driven by PyPI's playwright (never `playwright install`). Without
chromium the test is skipped on a developer's machine and fails in CI (CI installs it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Route, expect

from tests.support.browser import WAIT_MS
from tests.support.processes import serving


@pytest.fixture
def server(tmp_path: Path) -> Iterator[httpx.Client]:
    with serving(tmp_path / "data", tmp_path / "serve.log") as http:
        yield http


def test_every_html_page_allows_no_other_host(server: httpx.Client) -> None:
    for path in ("/graphql", "/redeem/VS-AAAAA-AAAAA-AAAAA-AAAAA", "/", "/orders/VO-261207-AAAA-AAAA"):
        response = server.get(path, headers={"Accept": "text/html"})
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html"), path
        policy = response.headers["Content-Security-Policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["default-src"] == "'none'", policy
        assert "http" not in policy, policy
        assert "*" not in policy, policy
        assert "'unsafe-inline'" not in directives["script-src"]
        assert "'unsafe-eval'" not in directives["script-src"]
        # nothing in the page itself loads from elsewhere
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", response.text), path


def test_graphiql_renders_and_runs_a_query_with_other_hosts_blocked(
    server: httpx.Client, browser: Browser, tmp_path: Path
) -> None:
    own = urlsplit(str(server.base_url)).netloc
    blocked: list[str] = []
    problems: list[str] = []

    def only_own_host(route: Route) -> None:
        if urlsplit(route.request.url).netloc == own or route.request.url.startswith("data:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(WAIT_MS)
    context.route("**/*", only_own_host)
    page = context.new_page()
    page.on("console", console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    try:
        page.goto(f"{server.base_url}/graphql", wait_until="load")
        run = page.locator(".graphiql-execute-button")
        expect(run).to_be_visible()
        run.click()
        response = page.locator(".graphiql-response")
        expect(response).to_contain_text("BASIC_OV")
        expect(response).to_contain_text('"data"')
        page.screenshot(path=str(tmp_path / "graphiql.png"))
        if shots := os.environ.get("VOUCHSAFE_SCREENSHOTS"):
            page.screenshot(path=str(Path(shots) / "graphiql.png"))
    finally:
        context.close()
    assert not blocked, blocked
    assert not problems, problems
