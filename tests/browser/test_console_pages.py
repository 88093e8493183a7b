"""The console's pages: served at every route with a strict CSP, 404 elsewhere; its GraphQL documents
valid against the schema; every page in English, German and French, with no untranslated key."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from graphql import OperationDefinitionNode, build_schema, parse, validate
from playwright.sync_api import Browser, expect

from settings import Settings
from tests.support.browser import WAIT_MS
from tests.support.console import Console, console_server, open_tab, sign_in
from tests.support.factories import PASSWORD, SIGN_OUT, SIGN_UP, unique_email
from tests.support.processes import graphql
from tests.support.processes import sign_in as api_sign_in
from tests.support.running import free_port
from tests.support.stores import ON_POSTGRES
from web.console import APP_PATHS

expect.set_options(timeout=WAIT_MS)

SCHEMA = Path(__file__).resolve().parents[2] / "schema.graphql"
VENDOR = Path(__file__).resolve().parents[2] / "console" / "vendor" / "graphql-ws"

ROUTES = [
    "/",
    "/signin",
    "/signup",
    "/orders",
    "/orders/new",
    "/orders/VO-000000-AAAA-AAAA",
    "/finance/settings",
    "/finance/deposit",
    "/finance/ledger",
    "/account/users",
    "/account/api-keys",
    "/account/webhooks",
    "/staff/accounts",
    "/staff/jobs",
]
NOT_ROUTES = ["/orders/a/b", "/finance", "/finance/other", "/account", "/staff/other", "/console/", "/index.html"]
ORDER = """mutation O($input: VoucherOrderCreateInput!) {
  voucherOrderCreate(input: $input) { order { number } errors { code } } }"""
DEPOSIT = """mutation D($input: FundsDepositInput!) { fundsDeposit(input: $input) { errors { code } } }"""
BALANCE = "mutation { financeSettingsUpdate(input: {billToBalanceEnabled: true}) { errors { code } } }"
# Headings of each page by language: the page answered and in the language asked for.
HEADINGS = {
    "en": {
        "/orders": "Voucher codes",
        "/orders/new": "Add new voucher",
        "/finance/settings": "Finance settings",
        "/finance/deposit": "Deposit funds",
        "/finance/ledger": "Ledger",
        "/account/users": "Users",
        "/account/api-keys": "API keys",
        "/account/webhooks": "Webhooks",
    },
    "de": {
        "/orders": "Gutschein-Codes",
        "/orders/new": "Neuen Gutschein hinzufügen",
        "/finance/settings": "Finanzeinstellungen",
        "/finance/deposit": "Guthaben einzahlen",
        "/finance/ledger": "Kontobewegungen",
        "/account/users": "Benutzer",
        "/account/api-keys": "API-Schlüssel",
        "/account/webhooks": "Webhooks",
    },
    "fr": {
        "/orders": "Codes de bon",
        "/orders/new": "Ajouter un bon",
        "/finance/settings": "Paramètres de paiement",
        "/finance/deposit": "Déposer des fonds",
        "/finance/ledger": "Mouvements",
        "/account/users": "Utilisateurs",
        "/account/api-keys": "Clés d’API",
        "/account/webhooks": "Webhooks",
    },
}
# Every visible control with no accessible name (label, aria-label, aria-labelledby or its text).
UNNAMED = """() => [...document.querySelectorAll("input, select, textarea, button, a[href]")]
  .filter((e) => e.offsetParent !== null)
  .filter((e) => {
    const labels = e.labels ? [...e.labels].map((l) => l.textContent).join("").trim() : "";
    const by = e.getAttribute("aria-labelledby");
    const named = by ? (document.getElementById(by) || {}).textContent : "";
    return !(labels || (e.getAttribute("aria-label") || "").trim() || (named || "").trim() || e.textContent.trim());
  })
  .map((e) => e.outerHTML.slice(0, 160))"""
UNTRANSLATED = re.compile(r"\b[a-z]+[A-Za-z]*\.[A-Za-z_]+\b|\{[a-z]+\}")


@pytest.fixture
def console(settings: Settings, tmp_path: Path) -> Iterator[Console]:
    with console_server(settings, tmp_path, on_postgres=ON_POSTGRES) as running:
        yield running


def test_every_route_serves_the_app_under_a_strict_csp_and_nothing_else_does(console: Console) -> None:
    assert sorted(ROUTES[:5] + ROUTES[6:]) == sorted(p for p in APP_PATHS if "{" not in p)
    for path in ROUTES:
        answer = console.http.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].startswith("text/html")
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp, csp
        assert "style-src 'self'" in csp, csp
        assert "unsafe" not in csp, csp
        assert answer.headers["x-frame-options"] == "DENY"
        assert '<script type="module" src="/console/app.js">' in answer.text
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", answer.text), "no inline script"
        assert " style=" not in answer.text
    for path in NOT_ROUTES:
        assert console.http.get(path).status_code == 404, path
    assert console.http.post("/orders").status_code == 405
    module = console.http.get("/console/app.js")
    assert module.status_code == 200
    assert "javascript" in module.headers["content-type"]
    assert console.http.get("/console/vendor/graphql-ws/LICENSE.md").status_code == 200
    # the vendored client is the published one, unchanged (its README names the files and their digests)
    readme = (VENDOR / "README.md").read_text(encoding="utf-8")
    for name in ("client.js", "common-CGW11Fyb.js"):
        served = console.http.get(f"/console/vendor/graphql-ws/{name}").content
        assert hashlib.sha256(served).hexdigest() in readme, name
    assert console.http.get("/console/nothing.js").status_code == 404


def test_every_document_of_the_console_is_one_named_operation_valid_against_the_schema(
    console: Console, browser: Browser, tmp_path: Path
) -> None:
    tab = open_tab(browser, tmp_path)
    tab.page.goto(f"{console.base}/signin")
    documents: dict[str, str] = tab.page.evaluate(
        "async () => Object.fromEntries(Object.entries(await import('/console/documents.js')))"
    )
    assert len(documents) >= 30
    schema = build_schema(SCHEMA.read_text(encoding="utf-8"))  # the committed SDL, as a client builds on it
    for name, text in documents.items():
        document = parse(text)
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        assert [o.name.value if o.name else None for o in operations] == [name]
        assert validate(schema, document) == [], name
    assert tab.problems == []


def partner(console: Console) -> str:
    email = unique_email("pages")
    data = {"email": email, "password": PASSWORD, "accountName": "Müller & Söhne"}
    assert graphql(console.http, SIGN_UP, {"input": data})["signUp"]["errors"] == []
    console.cli("partner", "enable", email)
    token = api_sign_in(console.http, email)
    assert graphql(console.http, BALANCE, token=token)["financeSettingsUpdate"]["errors"] == []
    deposit = {"amount": "5000.00", "cardToken": "tok_visa"}
    assert graphql(console.http, DEPOSIT, {"input": deposit}, token=token)["fundsDeposit"]["errors"] == []
    line = {"productCode": "BASIC_OV", "quantity": 12, "validityYears": 1, "fqdns": 1, "wildcards": 0}
    order = {"lines": [line], "customerName": "Acme", "paymentMethod": "ACCOUNT_BALANCE"}
    placed = graphql(console.http, ORDER, {"input": order}, token=token)["voucherOrderCreate"]
    assert placed["errors"] == [], placed
    return email


def test_every_page_in_english_german_and_french(console: Console, browser: Browser, tmp_path: Path) -> None:
    email = partner(console)
    tab = open_tab(browser, tmp_path)
    page = tab.page
    sign_in(tab, console.base, email, "/orders")
    number = page.locator("tbody tr[data-order]").first.get_attribute("data-order")
    for language in ("en", "de", "fr"):
        if language != "en":
            page.get_by_role("combobox", name=re.compile("Language|Sprache|Langue")).select_option(language)
        expect(page.locator("html")).to_have_attribute("lang", language)
        for path, title in HEADINGS[language].items():
            page.goto(f"{console.base}{path}")
            expect(page.locator("main h1")).to_have_text(title)
            page.wait_for_load_state("networkidle")
            text = page.locator("body").inner_text()
            assert not UNTRANSLATED.findall(text.replace("example.com", "")), (
                language,
                path,
                UNTRANSLATED.findall(text),
            )
            assert page.evaluate(UNNAMED) == [], (language, path)
            tab.shot(f"{language}{path.replace('/', '-')}")
        page.goto(f"{console.base}/orders/{number}")
        expect(page.locator("#vouchers tbody tr")).to_have_count(10)  # paged: 10 of 12
        page.get_by_role("button", name=re.compile("Next|Weiter|Suivant")).click()
        expect(page.locator("#vouchers tbody tr")).to_have_count(2)
        tab.shot(f"{language}-order")
    # the account's locale changed with the ADMIN's choice: a new sign-in speaks French
    again = open_tab(browser, tmp_path, locale="en-GB")
    sign_in(again, console.base, email, "/orders")
    expect(again.page.locator("main h1")).to_have_text("Codes de bon")
    expect(again.page.locator("#balance")).to_contain_text("$")  # Intl: "825,00 $US" in French
    assert tab.problems == []
    assert again.problems == []


def test_keyboard_live_list_and_webhooks(console: Console, browser: Browser, tmp_path: Path) -> None:
    email = partner(console)
    token = api_sign_in(console.http, email)
    tab = open_tab(browser, tmp_path)
    page = tab.page
    sign_in(tab, console.base, email, "/orders")
    rows = page.locator("tbody tr[data-order]")
    expect(rows).to_have_count(1)

    # the list is live: an order placed elsewhere (here by the API) appears without a reload
    line = {"productCode": "BASIC_OV", "quantity": 1, "validityYears": 1, "fqdns": 1, "wildcards": 0}
    order = {"lines": [line], "customerName": "Initech", "paymentMethod": "ACCOUNT_BALANCE"}
    assert graphql(console.http, ORDER, {"input": order}, token=token)["voucherOrderCreate"]["errors"] == []
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("Initech")
    page.get_by_label("Customer").fill("initech")
    expect(rows).to_have_count(1)

    # the keyboard alone: skip link first, then a new line added with Enter takes the focus
    page.goto(f"{console.base}/orders/new")
    expect(page.locator("#order-total")).not_to_have_text("—")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.get_by_role("button", name="Add another product").focus()
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Quantity (line 2)"
    page.keyboard.press("Control+A")
    page.keyboard.type("3")
    expect(page.locator("[data-price='1'] .line-price")).to_have_text("$525.00")

    # webhooks: the secret once, a test event, its delivery (to a closed port: it fails) and a retry
    page.goto(f"{console.base}/account/webhooks")
    page.get_by_label("URL").fill("ftp://nowhere")
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.locator("[data-error-for='url']")).to_be_visible()
    page.get_by_label("URL").fill(f"http://127.0.0.1:{free_port()}/hooks")
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.locator("#secret-value")).to_contain_text("whsec_")
    page.get_by_role("button", name="Send test event").click()
    delivery = page.locator("tr[data-delivery]")
    expect(delivery).to_have_count(1)
    expect(delivery).to_contain_text("webhook.test")
    tab.shot("webhooks")
    page.reload()
    expect(page.locator("#secret-value")).to_have_count(0)
    assert tab.problems == []


ORDER_PDF = "query { voucherOrders(first: 1) { edges { node { id number pdf { status } } } } }"
CANCEL = """mutation C($input: VoucherOrderCancelInput!) { voucherOrderCancel(input: $input) { errors { code } } }"""


def test_render_again_refused_says_why_in_words(console: Console, browser: Browser, tmp_path: Path) -> None:
    email = partner(console)
    token = api_sign_in(console.http, email)
    node: dict[str, Any] = {}
    # Polled: the console's server (another process) renders the PDF in its own worker.
    for _ in range(WAIT_MS // 250):
        node = graphql(console.http, ORDER_PDF, token=token)["voucherOrders"]["edges"][0]["node"]
        if node["pdf"]["status"] == "READY":
            break
        time.sleep(0.25)
    assert node["pdf"]["status"] == "READY", node
    tab = open_tab(browser, tmp_path)
    page = tab.page
    # The live channel answers nothing in this tab, so the page still offers the button after the
    # order is cancelled elsewhere: the server's refusal is what the click meets.
    page.route_web_socket(re.compile(r"/graphql$"), lambda ws: None)
    sign_in(tab, console.base, email, f"/orders/{node['number']}")
    expect(page.locator("#pdf-status")).to_have_attribute("data-status", "READY")
    button = page.get_by_role("button", name="Render again")
    expect(button).to_be_enabled()
    cancel = {"orderId": node["id"], "idempotencyKey": "render-again-refused"}
    assert graphql(console.http, CANCEL, {"input": cancel}, token=token)["voucherOrderCancel"]["errors"] == []
    button.click()
    expect(page.locator("#toast")).to_have_text("A cancelled order has no PDF to render again.")
    expect(page.locator("#pdf-status")).to_have_attribute("data-status", "READY")
    expect(page.get_by_role("button", name="Render again")).to_be_enabled()
    assert tab.problems == []


def test_a_session_ended_elsewhere_sends_the_order_page_to_sign_in(
    console: Console, browser: Browser, tmp_path: Path
) -> None:
    email = partner(console)
    tab = open_tab(browser, tmp_path)
    page = tab.page
    # No live channel: a live update (the PDF, a mail) would reload the codes before the click does.
    page.route_web_socket(re.compile(r"/graphql$"), lambda ws: None)
    sign_in(tab, console.base, email, "/orders")
    number = page.locator("tbody tr[data-order]").first.get_attribute("data-order")
    page.goto(f"{console.base}/orders/{number}")
    expect(page.locator("#vouchers tbody tr")).to_have_count(10)
    # The tab's own token, revoked by another client: the next page of codes meets a dead session.
    token = page.evaluate("() => sessionStorage.getItem('vouchsafe.session')")
    assert graphql(console.http, SIGN_OUT, token=token)["signOut"]["signedOut"] is True
    page.get_by_role("button", name="Next").click()
    page.wait_for_url(re.compile(r"/signin\?next="))
    expect(page.locator("main h1")).to_have_text("Sign in to vouchsafe")
    assert page.evaluate("() => sessionStorage.getItem('vouchsafe.session')") is None
    assert tab.problems == []
