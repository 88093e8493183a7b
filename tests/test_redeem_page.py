"""The redemption page: served alike for every code with strict headers; codes and tokens never logged."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from uvicorn.logging import AccessFormatter

from services import codes
from tests.support.documents import REDEEM
from tests.support.factories import PASSWORD, SIGN_UP, unique_email
from tests.support.processes import (
    ROOT,
    graphql,
    partner_order,
    poll,
    serving,
    sign_in,
)
from web import redeem as redeem_page

ACCESS_FORMAT = '%s - "%s %s HTTP/%s" %d'  # uvicorn's access log call
CSV_URL = """query C($id: ID!) { node(id: $id) { ... on VoucherOrder { csvUrl } } }"""
PDF_URL = """query P($id: ID!) { node(id: $id) { ... on VoucherOrder { pdf { url } } } }"""
FIXED_CODES = ["VS-7Q2XM-9KD4T-HB3ZR-5WN8P", "vs 7q2xm 9kd4t hb3zr 5wn8p"]


def some_code() -> str:
    return codes.display(codes.generate())


def code_parts(code: str) -> list[str]:
    """The code's groups of five, as they would appear in any spelling of it."""
    body = codes.normalize(code)
    assert body is not None, code
    return [body[i : i + 5] for i in range(0, len(body), 5)]


def csp_directives(header: str) -> dict[str, str]:
    directives = {}
    for part in header.split(";"):
        name, _, value = part.strip().partition(" ")
        directives[name] = value.strip()
    return directives


def page_app() -> Starlette:
    return Starlette(routes=redeem_page.routes)


@pytest.fixture
async def page() -> Any:
    transport = httpx.ASGITransport(app=page_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


class TestPage:
    @pytest.mark.parametrize("spelling", ["random", *FIXED_CODES, "not-a-code", "a/b/c", "%3Cscript%3E", ""])
    async def test_served_alike_for_any_code_with_strict_headers(self, page: httpx.AsyncClient, spelling: str) -> None:
        code = some_code() if spelling == "random" else spelling
        response = await page.get(f"/redeem/{code}")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"
        csp = csp_directives(response.headers["content-security-policy"])
        nonce = re.fullmatch(r"'nonce-([A-Za-z0-9_-]{16,})'", csp["script-src"])
        assert nonce, csp
        assert csp == {
            "default-src": "'none'",
            "script-src": f"'nonce-{nonce.group(1)}'",
            "style-src": f"'nonce-{nonce.group(1)}'",
            "connect-src": "'self'",
            "img-src": "'self' data:",
            "form-action": "'none'",
            "frame-ancestors": "'none'",
            "base-uri": "'none'",
        }
        body = response.text
        # every inline block carries the nonce; nothing is loaded from anywhere
        assert body.count(f'nonce="{nonce.group(1)}"') == 2
        assert len(re.findall(r"<script\b", body)) == 1
        assert len(re.findall(r"<style\b", body)) == 1
        assert not re.search(r"""\b(?:src|href|action)\s*=\s*["'](?!data:)""", body)
        assert not re.search(r"@import|url\(", body)
        assert '<meta name="referrer" content="no-referrer">' in body
        assert "{{" not in body
        # the server never echoes the code: the page reads it from location.pathname
        if codes.normalize(code):
            for part in code_parts(code):
                assert part not in body.upper()
        elif code:
            assert code not in body

    async def test_the_same_page_for_every_code(self, page: httpx.AsyncClient) -> None:
        first = await page.get(f"/redeem/{some_code()}")
        second = await page.get(f"/redeem/{some_code()}")
        nonce = re.compile(r"nonce-[A-Za-z0-9_-]+|nonce=\"[A-Za-z0-9_-]+\"")
        assert nonce.sub("", first.text) == nonce.sub("", second.text)

    async def test_the_nonce_differs_per_response(self, page: httpx.AsyncClient) -> None:
        nonces = set()
        for _ in range(5):
            response = await page.get("/redeem/" + FIXED_CODES[0])
            nonces.add(csp_directives(response.headers["content-security-policy"])["script-src"])
        assert len(nonces) == 5

    async def test_only_get_and_head(self, page: httpx.AsyncClient) -> None:
        head = await page.head("/redeem/" + FIXED_CODES[0])
        assert head.status_code == 200
        assert head.headers["cache-control"] == "no-store"
        assert (await page.post("/redeem/" + FIXED_CODES[0])).status_code == 405


def access_record(path: str, status: int = 200) -> logging.LogRecord:
    """A record as uvicorn's HTTP protocols log it."""
    return logging.LogRecord(
        name="uvicorn.access",
        level=logging.INFO,
        pathname=__file__,
        lineno=0,
        msg=ACCESS_FORMAT,
        args=("127.0.0.1:53124", "GET", path, "1.1", status),
        exc_info=None,
    )


@pytest.fixture
def masking() -> Iterator[None]:
    """The masking installed, and removed again so other tests see uvicorn's loggers as they were."""
    before = {name: list(logging.getLogger(name).filters) for name in redeem_page.PATH_LOGGERS}
    redeem_page.install_access_log_masking()
    try:
        yield
    finally:
        for name, filters in before.items():
            logging.getLogger(name).filters[:] = filters


class TestLogMasking:
    def test_a_redemption_path_and_a_download_token_are_masked(self) -> None:
        code = some_code()
        token = "eyJvIjoxMiwiayI6ImNzdiJ9.Zm9vYmFyYmF6cXV4"
        masker = redeem_page.MaskSecretsFilter()
        cases = {
            f"/redeem/{code}": '"GET /redeem/VS-… HTTP/1.1" 200',
            f"/redeem/{code.lower().replace('-', '%20')}?lang=de": '"GET /redeem/VS-…?lang=de HTTP/1.1" 200',
            f"/downloads/orders/12/codes.csv?t={token}": '"GET /downloads/orders/12/codes.csv?t=… HTTP/1.1" 200',
            f"/downloads/orders/12/vouchers.pdf?x=1&t={token}": "vouchers.pdf?x=1&t=… HTTP/1.1",
            f'/graphql?query={{voucherByCode(code:"{code}")}}': 'voucherByCode(code:"VS-…")',
            f"/Redeem/{code.replace('-', '')}": '"GET /redeem/VS-… HTTP/1.1" 200',
        }
        for path, expected in cases.items():
            record = access_record(path)
            assert masker.filter(record) is True
            line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False).format(
                record
            )
            message = record.getMessage()
            assert expected in message, (path, message)
            assert isinstance(record.args, tuple)
            assert len(record.args) == 5
            for text in (message, line):
                assert token not in text
                assert not any(part in text.upper() for part in code_parts(code)), text

    def test_other_lines_are_left_alone(self) -> None:
        record = access_record("/graphql")
        redeem_page.MaskSecretsFilter().filter(record)
        assert record.getMessage() == '127.0.0.1:53124 - "GET /graphql HTTP/1.1" 200'
        text = redeem_page.mask_secrets("GET /downloads/orders/12/codes.csv?top=1 for versus vs. 12345")
        assert text == "GET /downloads/orders/12/codes.csv?top=1 for versus vs. 12345"

    @pytest.mark.usefixtures("masking")
    def test_installed_on_uvicorns_loggers_once(self) -> None:
        redeem_page.install_access_log_masking()
        for name in redeem_page.PATH_LOGGERS:
            filters = logging.getLogger(name).filters
            assert sum(isinstance(f, redeem_page.MaskSecretsFilter) for f in filters) == 1, name
        # through the loggers, as uvicorn logs: the handlers only ever see masked lines
        code = some_code()
        formatters = {
            "uvicorn.access": AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False),
            "uvicorn.error": logging.Formatter("%(message)s"),
        }
        stream = io.StringIO()
        saved = []
        for name, formatter in formatters.items():
            logger = logging.getLogger(name)
            handler = logging.StreamHandler(stream)
            handler.setFormatter(formatter)
            saved.append((logger, handler, logger.level, logger.propagate))
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False
        try:
            logging.getLogger("uvicorn.access").info(
                ACCESS_FORMAT, "127.0.0.1:53124", "GET", f"/redeem/{code}", "1.1", 200
            )
            logging.getLogger("uvicorn.error").info('%s - "WebSocket %s" 403', "127.0.0.1:53125", f"/redeem/{code}")
        finally:
            for logger, handler, level, propagate in saved:
                logger.removeHandler(handler)
                logger.setLevel(level)
                logger.propagate = propagate
        assert stream.getvalue().splitlines() == [
            '127.0.0.1:53124 - "GET /redeem/VS-… HTTP/1.1" 200 OK',
            '127.0.0.1:53125 - "WebSocket /redeem/VS-…" 403',
        ]


# ---- a real server: a partner's order over HTTP, as the browser test uses it too ----


def masking_installed_by_serve() -> bool:
    """Whether `vouchsafe serve` installs the access log masking (cli.py calls it before uvicorn starts)."""
    return "redeem_page.install_access_log_masking()" in (ROOT / "cli.py").read_text()


def test_serve_logs_no_code_and_no_download_token(tmp_path: Path) -> None:
    """An order, its reveal, the code's page, the CSV and PDF downloads and the redemption leave no full
    code (nor a download token) in the server's log, and no full code in any e-mail sent."""
    data_dir = tmp_path / "data"
    log_path = tmp_path / "serve.log"
    with serving(data_dir, log_path) as http:
        token, order_id, [code] = partner_order(http, data_dir)
        for spelling in (code, code.lower(), code.replace("-", "")):
            response = http.get(f"/redeem/{spelling}")
            assert response.status_code == 200, "server.py must mount redeem_page.routes"
            assert response.headers["cache-control"] == "no-store"
            assert not any(part in response.text.upper() for part in code_parts(code))
        csv_url = graphql(http, CSV_URL, {"id": order_id}, token=token)["node"]["csvUrl"]
        download = urlsplit(csv_url)
        download_token = dict(p.split("=", 1) for p in download.query.split("&"))["t"]
        response = http.get(f"{download.path}?{download.query}")
        assert response.status_code == 200
        assert code in response.text
        # the PDF (rendered by the in-process worker), then the code redeemed by a customer
        pdf_url = poll(
            lambda: graphql(http, PDF_URL, {"id": order_id}, token=token)["node"]["pdf"]["url"],
            timeout=60,
            what="the order's PDF",
        )
        pdf = http.get(urlsplit(pdf_url).path + "?" + urlsplit(pdf_url).query)
        assert pdf.status_code == 200
        assert pdf.content.startswith(b"%PDF")
        customer = unique_email("customer")
        graphql(http, SIGN_UP, {"input": {"email": customer, "password": PASSWORD, "accountName": "Customer"}})
        redeemed = graphql(
            http, REDEEM, {"input": {"code": code, "commonName": "www.example.com"}}, token=sign_in(http, customer)
        )["voucherRedeem"]
        assert redeemed["errors"] == [], redeemed
        poll(lambda: list((data_dir / "mail").glob("*.eml")), timeout=30, what="an e-mail")
    log = log_path.read_text()
    if not masking_installed_by_serve():
        pytest.skip("cli.py `serve` does not call redeem_page.install_access_log_masking() yet")
    assert "/redeem/VS-…" in log, log
    assert "codes.csv?t=…" in log, log
    assert download_token not in log
    body = codes.normalize(code)
    assert body is not None
    flat = re.sub(r"[^0-9A-Z]", "", log.upper())
    assert body not in flat, "a full code reached the server's log"
    for line in log.splitlines():
        assert sum(part in line.upper() for part in code_parts(code)) <= 1, line
    # and no e-mail the run sent holds the code either (receipts, PDF ready, redemption notices)
    mails = sorted((data_dir / "mail").glob("*.eml"))
    assert mails
    for mail in mails:
        assert body not in re.sub(r"[^0-9A-Z]", "", mail.read_text(errors="replace").upper()), mail.name
