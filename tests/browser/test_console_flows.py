"""The partner console in a real browser: everything the seeds describe, through the pages only.

Sign up, staff enable the voucher feature and adjust the balance, finance settings, deposits,
an order with two lines, show codes, CSV and PDF downloads, a redemption in a second browser
appearing live on the order page, cancel, the ledger, API keys, a MEMBER's view, the languages;
then every link in every e-mail those flows sent opens its page. Runs on the embedded default
and, with DATABASE_URL and REDIS_URL, on PostgreSQL with a separate worker process.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect

from settings import Settings
from tests.support.browser import WAIT_MS
from tests.support.console import Console, Tab, console_server, links_in, open_tab, redeem_as_new_customer, sign_in
from tests.support.factories import PASSWORD, unique_email
from tests.support.processes import graphql
from tests.support.stores import ON_POSTGRES

# Unique: the PostgreSQL run's database holds every earlier test's accounts, many named "Reseller Ltd".
ORGANISATION = f"Reseller {uuid.uuid4().hex[:6]} Ltd"

expect.set_options(timeout=WAIT_MS)

ORDERS = "query { voucherOrders(first: 10) { totalCount edges { node { number status } } } }"
VIEWER = "query { viewer { account { name } } }"


@pytest.fixture
def console(settings: Settings, tmp_path: Path) -> Iterator[Console]:
    with console_server(settings, tmp_path, on_postgres=ON_POSTGRES) as running:
        yield running


def sign_up(tab: Tab, base: str, address: str) -> None:
    page = tab.page
    page.goto(f"{base}/")
    page.wait_for_url("**/signin**")
    tab.shot("01-sign-in")
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("E-mail", exact=True).fill(address)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Organisation name").fill(ORGANISATION)
    tab.shot("02-sign-up")
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("#session-email")).to_have_text(address)
    page.get_by_role("link", name="Add new voucher").click()
    expect(page.locator("#partner-notice")).to_contain_text("Contact your account manager")
    tab.shot("03-not-a-partner")


def staff_enables(staff: Tab, console: Console, staff_email: str, partner_email: str) -> None:
    page = staff.page
    sign_in(staff, console.base, staff_email, "/staff/accounts")
    expect(page).to_have_url(f"{console.base}/staff/accounts")
    page.get_by_label("Search by name or e-mail").fill(partner_email)
    expect(page.locator("#accounts")).to_have_attribute("aria-busy", "false")
    card = page.locator(f"article[data-account='{ORGANISATION}']")
    expect(card).to_have_count(1)
    card.get_by_role("button", name=f"Enable vouchers: {ORGANISATION}").click()
    card = page.locator(f"article[data-account='{ORGANISATION}']")
    expect(card.locator("[data-partner]")).to_have_attribute("data-partner", "true")
    card.get_by_label("Amount (negative debits)").fill("10.00")
    card.get_by_label("Memo").fill("Welcome credit")
    card.get_by_role("button", name=f"Adjust balance: {ORGANISATION}").click()
    expect(card.locator(".acct-balance")).to_have_text("$10.00")
    staff.shot("04-staff-accounts")
    page.get_by_role("link", name="Failed jobs").click()
    expect(page.locator("main h1")).to_have_text("Failed jobs")
    staff.shot("05-staff-jobs")


def finance(tab: Tab) -> None:
    page = tab.page
    # the balance is live: the staff's adjustment shows without a reload
    expect(page.locator("#balance")).to_have_text("$10.00")
    page.get_by_role("link", name="Settings").click()
    balance = page.get_by_label("Bill to account balance")
    card = page.get_by_label("Use a credit card")
    expect(card).to_be_disabled()  # the only enabled method stays enabled
    balance.check()
    expect(card).to_be_enabled()
    page.get_by_label("Default payment method").select_option("ACCOUNT_BALANCE")
    card.uncheck()
    expect(balance).to_be_disabled()  # now the only one enabled
    expect(page.get_by_label("Default payment method").locator("option")).to_have_count(1)
    card.check()
    page.get_by_label("Default payment method").select_option("ACCOUNT_BALANCE")
    page.get_by_label("Low-balance threshold (USD)").fill("not money")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("[data-error-for='lowBalanceThreshold']")).to_be_visible()
    page.get_by_label("Low-balance threshold (USD)").fill("100.00")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status").filter(has_text="Settings saved.")).to_be_visible()
    tab.shot("06-finance-settings")

    page.get_by_role("link", name="Deposit funds").click()
    page.get_by_label("Amount (USD)").fill("5000.00")
    page.get_by_label("Card (sandbox)").select_option("tok_chargeDeclined")
    page.get_by_role("button", name="Deposit", exact=True).click()
    problem = page.locator("main form")
    expect(problem).to_contain_text("The card was declined. Nothing was charged")
    page.get_by_label("Card (sandbox)").select_option("tok_gatewayError")
    page.get_by_role("button", name="Deposit", exact=True).click()
    expect(problem).to_contain_text("could not be reached")
    page.get_by_label("Card (sandbox)").select_option("tok_visa")
    page.get_by_role("button", name="Deposit", exact=True).click()
    expect(page.locator("#deposit-result")).to_contain_text("$5,000.00 deposited")
    expect(page.locator("#balance")).to_have_text("$5,010.00")
    tab.shot("07-deposit")


def place_order(tab: Tab, console: Console, token: str) -> str:
    page = tab.page
    page.get_by_role("link", name="Add new voucher").click()
    page.get_by_label("Customer name (optional)").fill("Acme Corp")
    page.get_by_label("Notes (optional)").fill("Invoice 2024-17")
    page.get_by_label("Quantity (line 1)").fill("2")
    page.get_by_label("FQDNs (line 1)").fill("2")
    expect(page.locator("[data-price='0'] .line-price")).not_to_have_text("—")
    page.get_by_role("button", name="Add another product").click()
    page.get_by_label("Certificate type (line 2)").select_option(label="Secure Site OV")
    page.get_by_label("Quantity (line 2)").fill("1")
    page.get_by_label("Wildcards (line 2)").fill("1")
    expect(page.locator("[data-price='1'] .line-price")).not_to_have_text("—")
    expect(page.locator("#order-total")).not_to_have_text("—")
    # a line too many, removed again; an impossible count shows on its field
    page.get_by_role("button", name="Add another product").click()
    page.get_by_label("Quantity (line 3)").fill("0")
    expect(page.locator("[data-error-for='lines.2.quantity']")).to_be_visible()
    page.get_by_role("button", name="Remove (line 3)").click()
    expect(page.get_by_label("Bill to account balance")).to_be_checked()  # the default, preselected
    tab.shot("08-new-order")
    page.get_by_role("button", name="Submit").dblclick()
    page.wait_for_url("**/orders/VO-*")
    number = urlsplit(page.url).path.rsplit("/", 1)[1]
    expect(page.locator("#order-title")).to_contain_text(number)
    orders = graphql(console.http, ORDERS, token=token)["voucherOrders"]
    assert orders["totalCount"] == 1, orders  # the double click placed one order
    return number


def order_page(tab: Tab, number: str) -> list[str]:
    page = tab.page
    expect(page.locator("#status-counts [data-count='validUnused']")).to_contain_text("3")
    expect(page.locator("#pdf-status")).to_have_attribute("data-status", "READY", timeout=90_000)
    render_again(page)
    page.get_by_role("button", name="Show codes").click()
    codes = page.locator("#vouchers code.full")
    expect(codes).to_have_count(3)
    shown = codes.all_inner_texts()
    assert all(code.startswith("VS-") and "•" not in code for code in shown), shown
    expect(page.get_by_role("button", name=f"Copy {shown[0]}")).to_be_visible()
    tab.shot("09-order-codes")
    with page.expect_download() as csv_download:
        page.get_by_role("link", name="Download CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(csv_download.value.path()).read_text(encoding="utf-8-sig"))))
    assert sorted(row[next(iter(row))] for row in rows) == sorted(shown)
    with page.expect_download() as pdf_download:
        page.get_by_role("link", name="Download PDF").click()
    assert Path(pdf_download.value.path()).read_bytes().startswith(b"%PDF")
    return shown


# What the page shows while it happens: the button disabled during the request, the status's steps.
WATCH_RENDER = """() => {
  window.seen = { statuses: [], disabled: false };
  new MutationObserver(() => window.seen.statuses.push(document.getElementById("pdf-status").dataset.status))
    .observe(document.getElementById("pdf-status"), { attributes: true, attributeFilter: ["data-status"] });
  new MutationObserver(() => { window.seen.disabled ||= document.getElementById("render-pdf")?.disabled === true; })
    .observe(document.getElementById("render-pdf"), { attributes: true, attributeFilter: ["disabled"] });
}"""


def render_again(page: Page) -> None:
    """Render again on a READY PDF: PENDING at once, then READY live (no reload), recorded in the history."""
    page.evaluate(WATCH_RENDER)
    page.get_by_role("button", name="Render again").click()
    expect(page.locator("#toast")).to_have_text("The PDF is being prepared again.")
    expect(page.locator("#history li[data-kind='PDF_RENDER_REQUESTED']")).to_have_count(1)
    expect(page.locator("#history li[data-kind='PDF_READY']")).to_have_count(2, timeout=90_000)
    expect(page.locator("#pdf-status")).to_have_attribute("data-status", "READY")
    seen = page.evaluate("() => window.seen")
    assert seen["disabled"] is True, seen
    assert "PENDING" in seen["statuses"], seen
    assert seen["statuses"][-1] == "READY", seen
    expect(page.get_by_role("button", name="Render again")).to_be_enabled()
    expect(page.locator("#toast")).not_to_have_class(re.compile(r"\bshown\b"))  # gone before the screenshot


def redeem_elsewhere(browser: Browser, console: Console, shots: Path, code: str) -> None:
    customer = open_tab(browser, shots)
    page = customer.page
    redeem_as_new_customer(page, console.base, code)
    expect(page.locator("#result")).to_be_visible()
    assert customer.problems == []
    customer.context.close()


def cancel_flow(tab: Tab) -> None:
    page = tab.page
    # the first order has a redeemed code: the rules say why it cannot be cancelled
    expect(page.locator("#cancel-blockers")).to_contain_text("A code of this order has been redeemed.")
    page.get_by_role("link", name="Add new voucher").click()
    page.get_by_label("Customer name (optional)").fill("Globex")
    expect(page.locator("#order-total")).not_to_have_text("—")
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url("**/orders/VO-*")
    page.get_by_role("button", name="Cancel order").click()
    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_contain_text("goes back to your account balance")
    expect(dialog).to_contain_text("30 days")
    tab.shot("11-cancel-confirm")
    dialog.get_by_role("button", name="Yes, cancel the order").click()
    expect(page.locator("#order-status")).to_have_attribute("data-status", "CANCELLED")
    expect(page.locator("#status-counts [data-count='cancelled']")).to_contain_text("1")
    expect(page.locator("#history li[data-kind='REFUNDED']")).to_have_count(1)
    expect(page.get_by_role("button", name="Render again")).to_have_count(0)  # a cancelled order: no render
    tab.shot("12-cancelled")


def ledger(tab: Tab) -> None:
    page = tab.page
    page.get_by_role("link", name="Ledger").click()
    rows = page.locator("#ledger tbody tr[data-kind]")
    expect(rows).to_have_count(5)  # adjustment, deposit, two purchases, refund
    page.get_by_label("Kind").select_option("REFUND")
    expect(rows).to_have_count(1)
    tab.shot("13-ledger")
    page.get_by_label("Kind").select_option("")
    expect(rows).to_have_count(5)


def api_keys(tab: Tab, console: Console) -> None:
    page = tab.page
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("Back office")
    page.get_by_role("button", name="Create API key").click()
    secret = page.locator("#secret-value").inner_text()
    assert secret.startswith("vsk_")
    tab.shot("14-api-key")
    assert graphql(console.http, VIEWER, token=secret)["viewer"]["account"]["name"] == ORGANISATION
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke Back office").click()
    expect(page.locator("tr[data-key='Back office']")).to_contain_text("Revoked")
    answer = console.http.post("/graphql", json={"query": VIEWER}, headers={"Authorization": f"Bearer {secret}"})
    assert answer.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    page.reload()
    expect(page.locator("#new-secret")).to_be_hidden()  # shown once: gone on the next load


def add_member(tab: Tab) -> str:
    page = tab.page
    page.get_by_role("link", name="Users").click()
    address = unique_email("member")
    page.get_by_label("E-mail", exact=True).fill(address)
    page.get_by_label("Initial password").fill(PASSWORD)
    page.get_by_label("Role").select_option("MEMBER")
    page.get_by_role("button", name="Add user").click()
    expect(page.locator("#users")).to_contain_text(address)
    tab.shot("15-users")
    return address


def member_view(browser: Browser, console: Console, shots: Path, address: str, number: str) -> None:
    member = open_tab(browser, shots)
    page = member.page
    sign_in(member, console.base, address, f"/orders/{number}")
    expect(page.locator("#order-title")).to_contain_text(number)
    expect(page.get_by_role("button", name="Show codes")).to_have_count(0)
    expect(page.get_by_role("button", name="Cancel order")).to_have_count(0)
    expect(page.get_by_role("link", name="Download CSV")).to_have_count(0)
    expect(page.locator("#pdf-status")).to_have_attribute("data-status", "READY")
    expect(page.get_by_role("button", name="Render again")).to_have_count(0)
    # no money action is offered, and the pages say why when opened directly
    expect(page.get_by_role("link", name="Add new voucher")).to_have_count(0)
    expect(page.get_by_role("link", name="Deposit funds")).to_have_count(0)
    expect(page.get_by_role("link", name="API keys")).to_have_count(0)
    page.get_by_role("link", name="Settings").click()
    expect(page.get_by_role("button", name="Save settings")).to_be_disabled()
    for path, button in (("/finance/deposit", "Deposit"), ("/orders/new", "Submit")):
        page.goto(f"{console.base}{path}")
        expect(page.get_by_role("note")).to_contain_text("Your role can read this page")
        expect(page.get_by_role("button", name=button, exact=True)).to_have_count(0)
    member.shot("16-member")
    assert member.problems == []
    member.context.close()


def test_a_partner_does_what_the_seeds_describe_in_the_console(
    console: Console, browser: Browser, tmp_path: Path
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    staff_email = unique_email("staff")
    console.cli("staff", "create", staff_email, "--password", PASSWORD)
    partner_email = unique_email("partner")

    partner = open_tab(browser, shots)
    staff = open_tab(browser, shots)
    try:
        flows(browser, console, shots, partner, staff, staff_email, partner_email)
    except Exception:
        # What each page showed when a step failed, beside the test's log.
        partner.shot("failure-partner")
        staff.shot("failure-staff")
        raise


def flows(
    browser: Browser, console: Console, shots: Path, partner: Tab, staff: Tab, staff_email: str, partner_email: str
) -> None:
    sign_up(partner, console.base, partner_email)
    token = partner.page.evaluate("() => sessionStorage.getItem('vouchsafe.session')")
    staff_enables(staff, console, staff_email, partner_email)
    partner.page.reload()
    finance(partner)
    number = place_order(partner, console, token)
    codes = order_page(partner, number)

    redeem_elsewhere(browser, console, shots, codes[0])
    page = partner.page
    # no reload: the subscription brings the redemption
    expect(page.locator("#status-counts [data-count='validUsed']")).to_contain_text("1")
    expect(page.locator("#history li[data-kind='VOUCHER_REDEEMED']")).to_have_count(1)
    expect(page.locator("#vouchers tr[data-status='VALID_USED']")).to_have_count(1)
    partner.shot("10-redeemed-live")

    cancel_flow(partner)
    ledger(partner)
    api_keys(partner, console)
    member_view(browser, console, shots, add_member(partner), number)
    follow_mail_links(partner, console, number)

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/signin")
    assert page.evaluate("() => sessionStorage.getItem('vouchsafe.session')") is None
    assert partner.problems == []
    assert staff.problems == []


def follow_mail_links(tab: Tab, console: Console, number: str) -> None:
    """Every link in every e-mail sent so far answers 200 and opens the page it names."""
    page = tab.page
    expected = {"Welcome", "placed", "Deposit", "cancelled"}
    subjects = [str(m["Subject"]) for m in console.mails()]
    assert all(any(word.lower() in s.lower() for s in subjects) for word in expected), subjects
    seen = 0
    for message in console.mails():
        for link in links_in(message):
            assert link.startswith(console.base), link
            answer = page.goto(link)
            assert answer is not None, link
            assert answer.status == 200, link
            path = urlsplit(link).path
            if path.startswith("/orders/"):
                expect(page.locator("#order-title")).to_contain_text(path.rsplit("/", 1)[1])
            elif path in ("", "/"):
                expect(page.locator("main h1")).to_have_text("Voucher codes")
            seen += 1
    assert seen >= 3, seen
    assert number
