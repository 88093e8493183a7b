"""The console and the redemption page in allow-list mode: every operation goes by its id, none as text.

A server with VOUCHSAFE_TRUSTED_DOCUMENTS=only and an empty document table (the project's
own documents ship with the code): a partner signs up, orders, shows the codes; a customer
redeems one on /redeem/<code>; the order page and the dashboard follow it live. Every
POST /graphql and every WebSocket `subscribe` the browser sent names a `documentId` and
carries no `query` text, while a text query from outside is refused.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Request, WebSocket, expect

import cli_documents
from services.trusted_documents import document_hash
from settings import Settings
from tests.support.browser import WAIT_MS
from tests.support.console import Console, Tab, console_server, open_tab, redeem_as_new_customer
from tests.support.factories import PASSWORD, unique_email
from tests.support.stores import ON_POSTGRES

expect.set_options(timeout=WAIT_MS)

ORGANISATION = f"Trusted {uuid.uuid4().hex[:6]} Ltd"
TEXT_QUERY = "query { products { code } }"


@pytest.fixture
def console(settings: Settings, tmp_path: Path) -> Iterator[Console]:
    only = {"VOUCHSAFE_TRUSTED_DOCUMENTS": "only"}
    with console_server(settings, tmp_path, on_postgres=ON_POSTGRES, extra_env=only) as running:
        yield running


class Sent:
    """What a tab sent to /graphql: each POST's body and answer status, each WebSocket message."""

    def __init__(self, tab: Tab) -> None:
        self.posts: list[tuple[dict[str, object], int | None]] = []
        self.frames: list[dict[str, object]] = []
        tab.page.on("requestfinished", self._finished)
        tab.page.on("websocket", self._socket)

    def _finished(self, request: Request) -> None:
        if urlsplit(request.url).path == "/graphql" and request.method == "POST":
            response = request.response()
            self.posts.append((json.loads(request.post_data or "null"), response.status if response else None))

    def _socket(self, socket: WebSocket) -> None:
        socket.on("framesent", lambda payload: self.frames.append(json.loads(payload)))

    def subscribes(self) -> list[dict[str, object]]:
        return [frame for frame in self.frames if frame.get("type") == "subscribe"]

    def check_by_id(self) -> None:
        assert self.posts
        for body, status in self.posts:
            assert status == 200, (body, status)
            assert str(body.get("documentId")).startswith("sha256:"), body
            assert "query" not in body, body
        for frame in self.subscribes():
            payload = frame["payload"]
            assert isinstance(payload, dict), frame
            assert str(payload.get("documentId")).startswith("sha256:"), frame
            assert "query" not in payload, frame


def test_a_text_query_is_refused_in_allow_list_mode(console: Console) -> None:
    refused = console.http.post("/graphql", json={"query": TEXT_QUERY})
    assert refused.status_code == 403
    assert refused.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_REQUIRED"
    # the project's own documents are known without loading anything: the console's Products, by id
    document_id = next(i for i, name in console_ids().items() if name == "Products")
    answer = console.http.post("/graphql", json={"documentId": document_id})
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["products"]


def test_the_console_and_the_redemption_page_send_only_ids(console: Console, browser: Browser, tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    partner, customer = open_tab(browser, shots), open_tab(browser, shots)
    sent, redeemed = Sent(partner), Sent(customer)
    try:
        flow(console, partner, customer)
    except Exception:
        partner.shot("failure-partner")
        customer.shot("failure-customer")
        raise
    sent.check_by_id()
    redeemed.check_by_id()
    # the live parts went over the WebSocket by id too: the account, the order page, the dashboard's rows
    assert {"AccountLive", "OrderLive", "OrderRowLive"} <= subscribed_operations(sent)
    assert len(redeemed.posts) >= 4  # the voucher, sign-up, sign-in, the redemption (and the requests)
    assert partner.problems == []
    assert customer.problems == []
    # and from outside, text is refused while the browser's ids ran
    assert console.http.post("/graphql", json={"query": TEXT_QUERY}).status_code == 403


def console_ids() -> dict[str, str]:
    """Each console document's id -> its operation's name, as `documents collect` finds them."""
    source = cli_documents.CONSOLE_DOCUMENTS.read_text(encoding="utf-8")
    texts = cli_documents.console_module_documents(source)
    return {f"sha256:{document_hash(text)}": text.split()[1].split("(")[0] for text in texts}


def subscribed_operations(sent: Sent) -> set[str]:
    return {console_ids()[str(frame["payload"]["documentId"])] for frame in sent.subscribes()}


def flow(console: Console, partner: Tab, customer: Tab) -> None:
    page = partner.page
    address = unique_email("trusted")
    page.goto(f"{console.base}/")
    page.wait_for_url("**/signin**")
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("E-mail", exact=True).fill(address)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Organisation name").fill(ORGANISATION)
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("#session-email")).to_have_text(address)
    console.cli("partner", "enable", address)
    page.reload()

    # an order paid by card, its codes shown
    page.locator("#nav").get_by_role("link", name="Add new voucher").click()
    page.get_by_label("Quantity (line 1)").fill("2")
    expect(page.locator("#order-total")).not_to_have_text("—")
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url("**/orders/VO-*")
    number = urlsplit(page.url).path.rsplit("/", 1)[1]
    expect(page.locator("#status-counts [data-count='validUnused']")).to_contain_text("2")
    page.get_by_role("button", name="Show codes").click()
    codes = page.locator("#vouchers code.full")
    expect(codes).to_have_count(2)
    code = codes.first.inner_text()

    # the customer redeems a code on the redemption page
    other = customer.page
    redeem_as_new_customer(other, console.base, code)
    expect(other.locator("#result")).to_be_visible()

    # no reload: the order page's subscription brings the redemption
    expect(page.locator("#status-counts [data-count='validUsed']")).to_contain_text("1")
    expect(page.locator("#vouchers tr[data-status='VALID_USED']")).to_have_count(1)
    partner.shot("order-redeemed-live")
    # the dashboard lists the order and follows its rows
    page.get_by_role("link", name="Voucher codes").first.click()
    expect(page.locator("main h1")).to_have_text("Voucher codes")
    expect(page.locator("main")).to_contain_text(number)
    partner.shot("dashboard")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/signin")


# An id the server does not know (a console newer than the server's manifest): the text goes once, then always.
STALE_ID = """async () => {
  const { DOCUMENT_IDS } = await import("/console/document-ids.js");
  const { gql } = await import("/console/api.js");
  const { Products } = await import("/console/documents.js");
  DOCUMENT_IDS.set(Products, "sha256:" + "0".repeat(64));
  const first = await gql(Products);
  const again = await gql(Products);
  return first.products.length === again.products.length && first.products.length > 0;
}"""


def test_an_id_the_server_does_not_know_goes_as_text_once(console: Console, browser: Browser, tmp_path: Path) -> None:
    tab = open_tab(browser, tmp_path)
    sent = Sent(tab)
    tab.page.goto(f"{console.base}/signin")
    expect(tab.page.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
    sent.posts.clear()
    assert tab.page.evaluate(STALE_ID) is True
    for _ in range(100):  # the last `requestfinished` may reach us after the script's answer
        if len(sent.posts) >= 3:
            break
        tab.page.wait_for_timeout(50)
    assert [(sorted(body), status) for body, status in sent.posts] == [
        (["documentId", "variables"], 404),  # PERSISTED_DOCUMENT_NOT_FOUND
        (["query", "variables"], 200),  # the text of a stored document: accepted even in allow-list mode
        (["query", "variables"], 200),  # remembered: no second try by id
    ]
    assert [p for p in tab.problems if "404" not in p] == []  # chromium logs the 404 itself


STALE_SUBSCRIPTION = """async (token) => {
  const api = await import("/console/api.js");
  const { DOCUMENT_IDS } = await import("/console/document-ids.js");
  const { AccountLive } = await import("/console/documents.js");
  api.session.set(token);
  DOCUMENT_IDS.set(AccountLive, "sha256:" + "1".repeat(64));
  return await new Promise((resolve, reject) => {
    const stop = api.subscribe(AccountLive, {}, (data) => { stop(); resolve(data.accountUpdated.name); }, reject);
  });
}"""


def by_id(console: Console, name: str, variables: dict[str, object]) -> dict[str, object]:
    document_id = next(i for i, operation in console_ids().items() if operation == name)
    answer = console.http.post("/graphql", json={"documentId": document_id, "variables": variables})
    assert answer.status_code == 200, answer.text
    data: dict[str, object] = answer.json()["data"]
    return data


def test_an_unknown_subscription_id_goes_as_text(console: Console, browser: Browser, tmp_path: Path) -> None:
    address = unique_email("stale")
    by_id(console, "SignUp", {"input": {"email": address, "password": PASSWORD, "accountName": ORGANISATION}})
    token = by_id(console, "SignIn", {"input": {"email": address, "password": PASSWORD}})["signIn"]["token"]
    tab = open_tab(browser, tmp_path)
    sent = Sent(tab)
    tab.page.goto(f"{console.base}/signin")
    expect(tab.page.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
    assert tab.page.evaluate(STALE_SUBSCRIPTION, token) == ORGANISATION
    # by the id, refused as unknown (PERSISTED_DOCUMENT_NOT_FOUND), then by the text, which runs
    first, second = (frame["payload"] for frame in sent.subscribes())
    assert first == {"documentId": "sha256:" + "1" * 64, "variables": {}}
    assert isinstance(second, dict)
    assert sorted(second) == ["query", "variables"]
    assert str(second["query"]).startswith("subscription AccountLive")
