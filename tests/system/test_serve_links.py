"""Links are right by default: `vouchsafe serve --port N` with VOUCHSAFE_PUBLIC_URL unset links to port N.

A real `serve` process with an empty environment (embedded): the order's CSV and PDF
download URLs, the redemption links inside the CSV and in the PDF all use the port it
listens on, and it prints where it serves, its public URL and its data dir. Production
refuses to start without an explicit public URL.
"""

from __future__ import annotations

import base64
import csv
import io
import re
import secrets
from pathlib import Path
from typing import Any

import httpx
from pypdf import PdfReader

from tests.support.processes import START_TIMEOUT, graphql, partner_order, poll, process_env, run_cli, serving

URLS = """query U($id: ID!) { node(id: $id) { ... on VoucherOrder { csvUrl pdf { status url } } } }"""


def pdf_links(data: bytes) -> list[str]:
    links = []
    for page in PdfReader(io.BytesIO(data)).pages:
        for annotation in page.get("/Annots") or []:
            action = annotation.get_object().get("/A")
            if action and "/URI" in action:
                links.append(str(action["/URI"]))
    return links


def download(http: httpx.Client, url: str) -> bytes:
    response = http.get(url)
    assert response.status_code == 200, response.text
    return response.content


def test_serve_on_another_port_links_to_that_port(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    log_path = tmp_path / "serve.log"
    with serving(data_dir, log_path) as http:
        base = f"http://127.0.0.1:{http.base_url.port}"
        assert http.base_url.port != 8000
        # given: a partner's order of two vouchers, paid by card
        token, order_id, codes = partner_order(http, data_dir, quantity=2)

        def urls() -> dict[str, Any] | None:
            node = graphql(http, URLS, {"id": order_id}, token=token)["node"]
            return dict(node) if node["pdf"]["status"] == "READY" else None

        node = poll(urls, timeout=90, what="the PDF READY")
        # then: the download URLs, the CSV's links and the PDF's links use the port served
        assert node["csvUrl"].startswith(f"{base}/downloads/orders/")
        assert node["pdf"]["url"].startswith(f"{base}/downloads/orders/")
        rows = list(csv.DictReader(io.StringIO(download(http, node["csvUrl"]).decode())))
        links = [value for row in rows for value in row.values() if "/redeem/" in (value or "")]
        assert sorted(links) == sorted(f"{base}/redeem/{code}" for code in codes), rows
        assert sorted(pdf_links(download(http, node["pdf"]["url"]))) == sorted(links)
    # and: it said where it serves, its public URL and its data dir
    log = log_path.read_text()
    assert f"GraphQL at {base}/graphql" in log, log
    assert re.search(rf"public URL {re.escape(base)} \(the address served", log), log
    assert f"data dir   {data_dir.resolve()}" in log, log


def test_production_refuses_to_start_without_a_public_url(tmp_path: Path) -> None:
    keys = {
        name: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        for name in ("VOUCHSAFE_SECRET_KEY", "VOUCHSAFE_CODE_KEY")
    }
    env = process_env(tmp_path / "data", VOUCHSAFE_ENV="production", **keys)
    result = run_cli("serve", "--port", "18777", env=env, cwd=tmp_path, timeout=START_TIMEOUT)
    assert result.returncode == 2, result.stderr
    assert "VOUCHSAFE_PUBLIC_URL is required when VOUCHSAFE_ENV=production" in result.stderr
    assert "Uvicorn running" not in result.stderr
