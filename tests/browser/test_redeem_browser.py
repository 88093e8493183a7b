"""A customer redeems a voucher on /redeem/<code> in a real browser, against a real `vouchsafe serve`.

Debian's chromium, driven by PyPI's playwright (never `playwright install`). Without
chromium the test is skipped on a developer's machine and fails in CI (CI installs it).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Browser, ConsoleMessage, Page, Request, expect

from services.errors import DomainError
from services.names import clean_dns_name
from tests.support.browser import WAIT_MS
from tests.support.factories import PASSWORD, unique_email
from tests.support.processes import graphql, partner_order, serving

BY_CODE = "query V($code: String!) { voucherByCode(code: $code) { status redeemable } }"


class Watched:
    """A page whose console errors (CSP violations among them), script errors and requests are kept."""

    def __init__(self, browser: Browser, locale: str, shots: Path) -> None:
        self.context = browser.new_context(locale=locale, viewport={"width": 900, "height": 900})
        self.context.set_default_timeout(WAIT_MS)
        self.context.set_default_navigation_timeout(WAIT_MS)
        self.page: Page = self.context.new_page()
        self.problems: list[str] = []
        self.requests: list[Request] = []
        self.shots = shots
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.on("request", self._request)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console: {message.text}")

    def _request(self, request: Request) -> None:
        self.requests.append(request)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)


def check_requests(watched: Watched, base: str, code: str) -> None:
    """Only the page's own origin was asked; the code travelled in no URL but the page's own, never as Referer."""
    page_url = f"{base}/redeem/{code}"
    assert watched.requests
    for request in watched.requests:
        parts = urlsplit(request.url)
        assert f"{parts.scheme}://{parts.netloc}" == base, request.url
        referer = {name.lower(): value for name, value in request.headers.items()}.get("referer")
        assert not referer, (request.url, referer)
        if request.url != page_url:
            assert code not in request.url, request.url
            assert code[-5:] not in request.url, request.url
            assert request.method == "POST", request.url
            assert parts.path == "/graphql", request.url


NAMES = [
    "www.example.com",
    " WWW.Example.COM. ",
    "example",
    "-bad.example.com",
    "bad-.example.com",
    "a_b.example.com",
    "exa mple.com",
    "ex@mple.com",
    "example..com",
    "*.example.com",
    "*.*.example.com",
    "*example.com",
    "1.2.3.4",
    "example.123",
    "123.example.c0m",
    "a" * 63 + ".com",
    "a" * 64 + ".com",
    ".".join(["abcdefghi"] * 25) + ".com",  # 253 characters: the longest name
    ".".join(["abcdefghi"] * 25) + ".co.uk",
    "bücher.de",
    "MÜNCHEN.de",
    "例え.jp",
    "xn--bcher-kva.de",
]


def python_rule(value: str, wildcard: bool) -> str | None:
    try:
        return clean_dns_name(value, field="name", wildcard=wildcard)
    except DomainError:
        return None


def assert_same_name_rule(page: Page) -> None:
    """The page's client-side check of a name agrees with services/names.py."""
    for wildcard in (False, True):
        cases = [name if not wildcard or name.startswith("*") else f"*.{name.strip()}" for name in NAMES]
        found = page.evaluate(
            "([names, wildcard]) => names.map((n) => window.redeemNameRule.clean(n, wildcard).name || null)",
            [cases, wildcard],
        )
        assert found == [python_rule(name, wildcard) for name in cases], list(zip(cases, found, strict=True))


def test_a_customer_redeems_a_voucher_in_the_browser(browser: Browser, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    shots = tmp_path / "screenshots"
    shots.mkdir()
    customer = unique_email("customer")
    with serving(data_dir, tmp_path / "serve.log") as http:
        _, _, [code] = partner_order(http, data_dir)
        base = str(http.base_url).rstrip("/")

        # the voucher: what it buys
        first = Watched(browser, "en-GB", shots)
        page = first.page
        page.goto(f"{base}/redeem/{code}")
        expect(page.locator("#v-product")).to_have_text("Basic OV", timeout=WAIT_MS)
        expect(page.locator("#v-validity")).to_have_text("1 year")
        expect(page.locator("#v-fqdns")).to_contain_text("2")
        expect(page.locator("#v-wildcards")).to_contain_text("1")
        expect(page.locator("#v-status")).to_have_attribute("data-status", "VALID_UNUSED")
        expect(page.locator("#v-code")).to_contain_text(code[-5:])
        expect(page.locator("#v-code")).not_to_contain_text(code[3:8])
        expect(page.locator("#problem")).to_be_hidden()
        first.shot("01-voucher")

        # a new account, made on the page
        page.get_by_role("button", name="I'm new here").click()
        page.get_by_label("E-mail").fill(customer)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_label("Your name or organisation").fill("Jane Customer")
        first.shot("02-sign-up")
        page.get_by_role("button", name="Create account", exact=True).click()
        expect(page.locator("#session-email")).to_have_text(customer, timeout=WAIT_MS)
        expect(page.locator("#request")).to_be_visible()
        expect(page.locator("#auth")).to_be_hidden()
        expect(page.locator("#meter")).to_contain_text("0 of 2")
        first.shot("03-request-form")

        # the page checks names as the server does, and shows the server's errors by their fields
        page.get_by_label("Common name").fill("not a name")
        page.get_by_label("Further domain names").fill("a.example.com\nb.example.com")
        page.get_by_label("Wildcard names").fill("example.com")
        page.get_by_role("button", name="Submit request").click()
        expect(page.locator("#err-commonName")).to_contain_text("not a valid domain name")
        expect(page.get_by_label("Common name")).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#err-wildcards")).to_contain_text("Line 1")
        first.shot("04-client-errors")
        page.get_by_label("Common name").fill("www.example.com")
        page.get_by_label("Wildcard names").fill("*.example.com")
        page.get_by_role("button", name="Submit request").click()
        expect(page.locator("#err-additionalFqdns")).to_contain_text("covers 2 domain name(s)")
        expect(page.locator("#err-commonName")).to_be_hidden()
        page.get_by_label("Further domain names").fill("example.com")
        page.get_by_label("Certificate signing request (optional)").fill(
            "-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgQ1NS\n-----END CERTIFICATE REQUEST-----"
        )
        page.get_by_role("button", name="Submit request").click()
        expect(page.locator("#err-csr")).to_contain_text("could not be read", timeout=WAIT_MS)
        first.shot("05-server-error")
        assert graphql(http, BY_CODE, {"code": code})["voucherByCode"]["status"] == "VALID_UNUSED"

        # the request, accepted
        page.get_by_label("Certificate signing request (optional)").fill("")
        page.get_by_role("button", name="Submit request").click()
        result = page.locator("#result")
        expect(result).to_be_visible(timeout=WAIT_MS)
        expect(result.locator("[data-status]")).to_have_attribute("data-status", "SUBMITTED")
        expect(result).to_contain_text("www.example.com")
        expect(result).to_contain_text("*.example.com")
        expect(page.locator("#success")).to_be_visible()
        expect(page.locator("#request")).to_be_hidden()
        expect(page.locator("#v-status")).to_have_attribute("data-status", "VALID_USED")
        first.shot("06-submitted")
        assert graphql(http, BY_CODE, {"code": code})["voucherByCode"]["status"] == "VALID_USED"
        check_requests(first, base, code)
        assert first.problems == []
        first.context.close()

        # the same code again, on a new page: used
        second = Watched(browser, "en-GB", shots)
        page = second.page
        page.goto(f"{base}/redeem/{code}")
        expect(page.locator("#problem")).to_have_attribute("data-problem", "VALID_USED", timeout=WAIT_MS)
        expect(page.locator("#problem")).to_contain_text("This voucher has been used")
        expect(page.locator("#v-status")).to_have_attribute("data-status", "VALID_USED")
        expect(page.locator("#request")).to_be_hidden()
        expect(page.get_by_role("button", name="I'm new here")).to_be_hidden()
        second.shot("07-used")
        # signed in, the customer follows the request there
        page.get_by_label("E-mail").fill(customer)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in", exact=True).click()
        requests = page.locator("#requests-list > li")
        expect(requests).to_have_count(1, timeout=WAIT_MS)
        expect(requests.first.locator("[data-status]")).to_have_attribute("data-status", "SUBMITTED")
        expect(requests.first).to_contain_text("www.example.com")
        expect(page.locator("#request")).to_be_hidden()
        second.shot("08-used-signed-in")

        # in German, by the browser's languages
        german = Watched(browser, "de-DE", shots)
        page = german.page
        page.goto(f"{base}/redeem/{code}")
        expect(page.locator("#problem")).to_contain_text("bereits eingelöst", timeout=WAIT_MS)
        expect(page.locator("html")).to_have_attribute("lang", "de")
        expect(page.locator("#v-validity")).to_have_text("1 Jahr")
        expect(page.get_by_label("Passwort")).to_be_visible()
        german.shot("09-used-de")
        assert german.problems == []
        german.context.close()

        # an unknown code
        unknown = Watched(browser, "fr-FR", shots)
        page = unknown.page
        page.goto(f"{base}/redeem/VS-00000-00000-00000-00000")
        expect(page.locator("#problem")).to_have_attribute("data-problem", "unknown", timeout=WAIT_MS)
        expect(page.locator("#problem")).to_contain_text("Code inconnu")
        expect(page.locator("#voucher")).to_be_hidden()
        expect(page.locator("#auth")).to_be_hidden()
        unknown.shot("10-unknown-fr")
        assert_same_name_rule(page)
        assert unknown.problems == []
        unknown.context.close()

        # back on the second page: cancelling the request within 30 days frees the voucher
        page = second.page
        cancel = page.locator("#requests-list").get_by_role("button", name="Cancel request")
        cancel.click()
        page.locator("#requests-list").get_by_role("button", name="Click again to cancel").click()
        expect(page.locator("#success")).to_contain_text("can be used again", timeout=WAIT_MS)
        expect(page.locator("#v-status")).to_have_attribute("data-status", "VALID_UNUSED")
        expect(page.locator("#problem")).to_be_hidden()
        expect(page.locator("#request")).to_be_visible()
        second.shot("11-cancelled")
        assert graphql(http, BY_CODE, {"code": code})["voucherByCode"]["redeemable"] is True
        check_requests(second, base, code)
        assert second.problems == []
        second.context.close()
