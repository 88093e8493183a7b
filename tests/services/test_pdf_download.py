"""The vouchers PDF's download: only once READY, only for its tenant and with a PDF token, recorded in the history."""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import urlsplit

import pytest
from pypdf import PdfReader

from models import OrderEventKind, PdfPart, PdfStatus, VoucherOrder
from services import pdf
from services.actors import Actor
from services.downloads import download_url
from settings import Settings
from tests.support.api import Api
from tests.support.orders import EV, drain, events, handlers, partner, placed, stored_pdf


def pdf_path(settings: Settings, order_id: int, actor: Actor, kind: str = "pdf") -> str:
    url = download_url(
        secret=settings.secret_key, public_url=settings.public_url, order_id=order_id, kind=kind, actor=actor
    )
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


@pytest.fixture
def app_settings(app: Any) -> Settings:
    settings: Settings = app.state.resources.settings
    return settings


class TestDownload:
    async def test_the_pdf_once_ready_and_the_history_records_it(
        self, api: Api, app_settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # given: a PDF stored in several parts
        monkeypatch.setattr(pdf, "PART_BYTES", 30_000)
        actor = await partner(app_settings)
        order = await placed(app_settings, actor, EV)
        path = pdf_path(app_settings, order.id, actor)
        await drain(order, handlers(app_settings))  # the in-process worker, if any, may run rows too
        # then: nothing while the PDF is not READY, even with its parts stored
        await VoucherOrder.filter(id=order.id).update(pdf_status=PdfStatus.PENDING)
        await assert_not_found(api, path)
        await VoucherOrder.filter(id=order.id).update(pdf_status=PdfStatus.READY)
        # when
        response = await api.http.get(path)
        # then
        assert response.status_code == 200
        assert response.content.startswith(b"%PDF-")
        assert response.content == await stored_pdf(order, app_settings)
        assert await PdfPart.filter(order_id=order.id).count() > 1
        assert len(PdfReader(io.BytesIO(response.content)).pages) == 2
        assert response.headers["content-type"] == "application/pdf"
        assert response.headers["content-disposition"] == f'attachment; filename="{order.number}.pdf"'
        assert response.headers["cache-control"] == "no-store"
        [event] = await events(order, OrderEventKind.PDF_DOWNLOADED)
        assert (event.actor_user_id, event.data) == (actor.user_id, {"file": "pdf"})

    async def test_refused_for_another_tenant_a_csv_token_and_head_records_nothing(
        self, api: Api, app_settings: Settings
    ) -> None:
        actor = await partner(app_settings)
        order = await placed(app_settings, actor, EV)
        await drain(order, handlers(app_settings))
        stranger = await partner(app_settings)
        await assert_not_found(api, pdf_path(app_settings, order.id, stranger))
        csv_token = pdf_path(app_settings, order.id, actor, kind="csv").split("?")[1]
        await assert_not_found(api, f"/downloads/orders/{order.id}/vouchers.pdf?{csv_token}")
        head = await api.http.head(pdf_path(app_settings, order.id, actor))
        assert head.status_code == 200
        assert head.content == b""
        assert await events(order, OrderEventKind.PDF_DOWNLOADED) == []


async def assert_not_found(api: Api, path: str) -> None:
    response = await api.http.get(path)
    assert (response.status_code, response.text) == (404, "Not Found")
    assert "content-disposition" not in response.headers
