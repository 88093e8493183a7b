"""Signed download URLs: the token, and GET /downloads/orders/<id>/codes.csv over HTTP.

Every refusal (no token, a tampered or expired one, another order, file or tenant,
a demoted or deactivated user, a revoked key, an unknown order) is one plain 404.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from infra import clock
from models import ApiKeyChannel, OrderEvent, OrderEventKind, Role, User, VoucherOrder
from services import accounts
from services.actors import Actor
from services.codes import CodeCipher
from services.downloads import DOWNLOAD_TTL, download_url, verify
from services.errors import DomainError, ErrorCode
from services.reveal import reveal_codes
from settings import Settings
from tests.support.api import Api
from tests.support.factories import PASSWORD, partner_admin, unique_email
from tests.support.orders import placed
from tests.support.running import shifted

SECRET = b"s" * 32
ADMIN = Actor(user_id=41, account_id=7, role=Role.ADMIN)


def token_of(url: str) -> str:
    query = urlsplit(url).query
    assert query.startswith("t=")
    return query[2:]


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def mint(settings: Settings, order_id: int, actor: Actor, kind: str = "csv") -> str:
    return download_url(
        secret=settings.secret_key, public_url=settings.public_url, order_id=order_id, kind=kind, actor=actor
    )


class TestToken:
    def test_the_url_names_the_order_and_the_file(self) -> None:
        csv_url = download_url(secret=SECRET, public_url="https://vs.example/", order_id=12, kind="csv", actor=ADMIN)
        pdf_url = download_url(secret=SECRET, public_url="https://vs.example", order_id=12, kind="pdf", actor=ADMIN)
        assert csv_url.startswith("https://vs.example/downloads/orders/12/codes.csv?t=")
        assert pdf_url.startswith("https://vs.example/downloads/orders/12/vouchers.pdf?t=")

    def test_a_token_grants_its_order_and_file_to_its_principal_until_it_expires(self) -> None:
        token = token_of(download_url(secret=SECRET, public_url="", order_id=12, kind="csv", actor=ADMIN))
        grant = verify(secret=SECRET, token=token, order_id=12, kind="csv")
        assert grant is not None
        assert (grant.order_id, grant.kind, grant.user_id, grant.api_key_id) == (12, "csv", 41, None)
        assert clock.now() + DOWNLOAD_TTL - timedelta(seconds=2) < grant.expires_at <= clock.now() + DOWNLOAD_TTL
        with shifted(DOWNLOAD_TTL):
            assert verify(secret=SECRET, token=token, order_id=12, kind="csv") is None

    def test_an_api_key_is_the_principal_of_its_tokens(self) -> None:
        key = Actor(user_id=None, account_id=7, role=Role.FINANCE, api_key_id=5)
        token = token_of(download_url(secret=SECRET, public_url="", order_id=12, kind="pdf", actor=key))
        grant = verify(secret=SECRET, token=token, order_id=12, kind="pdf")
        assert grant is not None
        assert (grant.user_id, grant.api_key_id) == (None, 5)

    def test_a_token_opens_nothing_else(self) -> None:
        token = token_of(download_url(secret=SECRET, public_url="", order_id=12, kind="csv", actor=ADMIN))
        principal, expires, mac = token.split(".")
        flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
        refused = [
            (SECRET, token, 13, "csv"),  # another order
            (SECRET, token, 12, "pdf"),  # another file
            (SECRET, token, 12, "zip"),  # no such file
            (b"t" * 32, token, 12, "csv"),  # another secret
            (SECRET, f"{principal}.{expires}.{flipped}", 12, "csv"),
            (SECRET, f"u42.{expires}.{mac}", 12, "csv"),  # another user
            (SECRET, f"k41.{expires}.{mac}", 12, "csv"),  # the same id as an API key
            (SECRET, f"{principal}.{int(expires) + 3600}.{mac}", 12, "csv"),  # a later expiry
            (SECRET, "", 12, "csv"),
            (SECRET, "garbage", 12, "csv"),
            (SECRET, token + "x", 12, "csv"),
            (SECRET, f"u0_41.{expires}.{mac}", 12, "csv"),
            (SECRET, f"u\u0664\u0661.{expires}.{mac}", 12, "csv"),  # Arabic-Indic digits parse as int()
            (SECRET, token * 50, 12, "csv"),
        ]
        for secret, candidate, order_id, kind in refused:
            assert verify(secret=secret, token=candidate, order_id=order_id, kind=kind) is None, candidate

    def test_only_admin_finance_and_api_keys_get_a_url(self) -> None:
        for actor in (
            Actor(user_id=41, account_id=7, role=Role.MEMBER),
            Actor(user_id=1, account_id=None, role=None, is_staff=True),
        ):
            with pytest.raises(DomainError) as raised:
                download_url(secret=SECRET, public_url="", order_id=12, kind="csv", actor=actor)
            assert raised.value.code == ErrorCode.PERMISSION_DENIED
        with pytest.raises(ValueError, match="unknown download kind"):
            download_url(secret=SECRET, public_url="", order_id=12, kind="zip", actor=ADMIN)


@pytest.fixture
def app_settings(app: Any) -> Settings:
    settings: Settings = app.state.resources.settings
    return settings


async def downloads_of(order: VoucherOrder) -> list[OrderEvent]:
    return await OrderEvent.filter(order_id=order.id, kind=OrderEventKind.CSV_DOWNLOADED).order_by("id")


async def assert_not_found(api: Api, path: str) -> None:
    response = await api.http.get(path)
    unknown = await api.http.get("/no/such/path")
    assert (response.status_code, response.text) == (404, "Not Found") == (unknown.status_code, unknown.text)
    assert response.headers["content-type"].startswith("text/plain")
    assert "content-disposition" not in response.headers


def rows_of(response: httpx.Response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.text, newline="")))


class TestDownloadCsv:
    async def test_an_admin_downloads_every_code_and_the_history_records_it(
        self, api: Api, app_settings: Settings
    ) -> None:
        # given
        admin = await partner_admin()
        order = await placed(app_settings, admin)
        url = mint(app_settings, order.id, admin)
        assert url.startswith(f"{app_settings.public_url}/downloads/orders/{order.id}/codes.csv?t=")
        # when
        response = await api.http.get(path_of(url))
        # then
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert response.headers["content-disposition"] == f'attachment; filename="{order.number}.csv"'
        assert response.headers["cache-control"] == "no-store"
        revealed = await reveal_codes(
            actor=admin, order_id=order.id, cipher=CodeCipher(app_settings.code_key), bus=api.bus
        )
        assert [row["code"] for row in rows_of(response)] == [r.code for r in revealed]
        [event] = await downloads_of(order)
        assert (event.actor_user_id, event.actor_api_key_id) == (admin.user_id, None)

    async def test_finance_users_and_api_keys_download_too(self, api: Api, app_settings: Settings) -> None:
        admin = await partner_admin()
        order = await placed(app_settings, admin)
        finance_user = await accounts.user_create(
            actor=admin, email=unique_email("finance"), password=PASSWORD, role=Role.FINANCE
        )
        finance = Actor(user_id=finance_user.id, account_id=admin.account_id, role=Role.FINANCE)
        created = await accounts.api_key_create(actor=admin, name="shop", channel=ApiKeyChannel.API)
        key = Actor(user_id=None, account_id=admin.account_id, role=Role.FINANCE, api_key_id=created.api_key.id)
        for actor in (finance, key):
            response = await api.http.get(path_of(mint(app_settings, order.id, actor)))
            assert response.status_code == 200
            assert len(rows_of(response)) == 3
        events = await downloads_of(order)
        assert [(e.actor_user_id, e.actor_api_key_id) for e in events] == [
            (finance_user.id, None),
            (None, created.api_key.id),
        ]

    async def test_a_link_works_until_it_expires(self, api: Api, app_settings: Settings) -> None:
        admin = await partner_admin()
        order = await placed(app_settings, admin)
        path = path_of(mint(app_settings, order.id, admin))
        with shifted(DOWNLOAD_TTL - timedelta(seconds=5)):
            assert (await api.http.get(path)).status_code == 200
        with shifted(DOWNLOAD_TTL + timedelta(seconds=1)):
            await assert_not_found(api, path)
        assert len(await downloads_of(order)) == 1

    async def test_a_missing_or_tampered_token(self, api: Api, app_settings: Settings) -> None:
        admin = await partner_admin()
        order = await placed(app_settings, admin)
        token = token_of(mint(app_settings, order.id, admin))
        principal, expires, mac = token.split(".")
        base = f"/downloads/orders/{order.id}/codes.csv"
        flipped = mac[:10] + ("A" if mac[10] != "A" else "B") + mac[11:]
        for path in (
            base,
            f"{base}?t=",
            f"{base}?t={principal}.{expires}.{flipped}",
            f"{base}?t={principal}.{int(expires) + 86_400}.{mac}",
            f"{base}?t=u{int(principal[1:]) + 1}.{expires}.{mac}",
            f"{base}?token={token}",
        ):
            await assert_not_found(api, path)
        assert await downloads_of(order) == []

    async def test_another_order_or_another_file(self, api: Api, app_settings: Settings) -> None:
        admin = await partner_admin()
        order = await placed(app_settings, admin)
        other = await placed(app_settings, admin)
        token = token_of(mint(app_settings, order.id, admin))
        pdf_token = token_of(mint(app_settings, order.id, admin, kind="pdf"))
        await assert_not_found(api, f"/downloads/orders/{other.id}/codes.csv?t={token}")
        await assert_not_found(api, f"/downloads/orders/{order.id}/codes.csv?t={pdf_token}")
        assert await downloads_of(order) == []
        assert await downloads_of(other) == []

    async def test_an_unknown_order(self, api: Api, app_settings: Settings) -> None:
        admin = await partner_admin()
        await assert_not_found(api, path_of(mint(app_settings, 9_000_000_000, admin)))

    async def test_another_tenants_user(self, api: Api, app_settings: Settings) -> None:
        # given: a link minted for another tenant's admin, with a valid signature
        admin = await partner_admin()
        order = await placed(app_settings, admin)
        stranger = await partner_admin()
        # then
        await assert_not_found(api, path_of(mint(app_settings, order.id, stranger)))
        assert await downloads_of(order) == []

    async def test_a_user_demoted_or_deactivated_after_the_link_was_made(
        self, api: Api, app_settings: Settings
    ) -> None:
        # given
        admin = await partner_admin()
        order = await placed(app_settings, admin)
        path = path_of(mint(app_settings, order.id, admin))
        # when: the role changes to MEMBER
        await User.filter(id=admin.user_id).update(role=Role.MEMBER)
        # then
        await assert_not_found(api, path)
        # and when: back to ADMIN but deactivated
        await User.filter(id=admin.user_id).update(role=Role.ADMIN, is_active=False)
        await assert_not_found(api, path)
        await User.filter(id=admin.user_id).update(is_active=True)
        assert (await api.http.get(path)).status_code == 200

    async def test_a_revoked_api_key(self, api: Api, app_settings: Settings) -> None:
        admin = await partner_admin()
        order = await placed(app_settings, admin)
        created = await accounts.api_key_create(actor=admin, name="shop", channel=ApiKeyChannel.API)
        key = Actor(user_id=None, account_id=admin.account_id, role=Role.FINANCE, api_key_id=created.api_key.id)
        path = path_of(mint(app_settings, order.id, key))
        await accounts.api_key_revoke(actor=admin, api_key_id=created.api_key.id)
        await assert_not_found(api, path)
        assert await downloads_of(order) == []

    async def test_head_sends_no_codes_and_records_nothing(self, api: Api, app_settings: Settings) -> None:
        admin = await partner_admin()
        order = await placed(app_settings, admin)
        response = await api.http.head(path_of(mint(app_settings, order.id, admin)))
        assert response.status_code == 200
        assert response.content == b""
        assert await downloads_of(order) == []
