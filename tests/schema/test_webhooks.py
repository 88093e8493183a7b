"""Webhook endpoints through the API: who manages and who reads them, secrets shown once, tenants apart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from models import WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint
from services.webhook_secrets import key_bytes
from settings import Settings
from tests.support.api import Api, loopback_client
from tests.support.factories import member, tenant

CREATE = """
mutation Create($input: WebhookEndpointCreateInput!) {
  webhookEndpointCreate(input: $input) {
    endpoint { id url events enabled description createdAt }
    secret
    errors { code field message }
  }
}"""
UPDATE = """
mutation Update($input: WebhookEndpointUpdateInput!) {
  webhookEndpointUpdate(input: $input) { endpoint { id url events enabled description disabledReason }
    errors { code field message } }
}"""
DELETE = """
mutation Delete($input: WebhookEndpointDeleteInput!) {
  webhookEndpointDelete(input: $input) { deletedId errors { code field message } }
}"""
ROTATE = """
mutation Rotate($input: WebhookEndpointRotateSecretInput!) {
  webhookEndpointRotateSecret(input: $input) { secret endpoint { id previousSecretExpiresAt }
    errors { code field message } }
}"""
TEST = """
mutation Test($input: WebhookEndpointTestInput!) {
  webhookEndpointTest(input: $input) { delivery { id eventId eventType status } errors { code field message } }
}"""
RETRY = """
mutation Retry($input: WebhookDeliveryRetryInput!) {
  webhookDeliveryRetry(input: $input) { delivery { id status attempts } errors { code field message } }
}"""
ENDPOINTS = """
query Endpoints($status: WebhookDeliveryStatus) {
  viewer { account { webhookEndpoints(first: 20) { totalCount edges { node {
    id url events enabled
    deliveries(first: 20, filter: {status: $status}) { edges { node {
      id eventId eventType status attempts lastStatusCode lastError nextAttemptAt createdAt } } }
  } } } } }
}"""
NODE = "query Node($id: ID!) { node(id: $id) { id ... on WebhookEndpoint { url } ... on WebhookDelivery { eventId } } }"
API_KEY_CREATE = (
    """mutation Key($input: ApiKeyCreateInput!) { apiKeyCreate(input: $input) { secret errors { code } } }"""
)

# The discard port: nothing listens, so the in-process dispatcher's attempts fail and wait their turn.
NOWHERE = "http://127.0.0.1:9/hooks"


@pytest.fixture
def insecure(settings: Settings) -> Settings:
    return replace(settings, webhooks_allow_insecure=True)


@pytest.fixture
async def api(insecure: Settings) -> AsyncIterator[Api]:
    from server import create_app

    app = create_app(insecure)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=loopback_client())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield Api(http)


async def create(api: Api, token: str, url: str = NOWHERE, events: list[str] | None = None, **extra: Any) -> Any:
    variables = {"input": {"url": url, "events": ["VOUCHER_REDEEMED"] if events is None else events, **extra}}
    return (await api(CREATE, variables, token=token))["data"]["webhookEndpointCreate"]


async def endpoints(api: Api, token: str, status: str | None = None) -> list[dict[str, Any]]:
    result = await api(ENDPOINTS, {"status": status}, token=token)
    assert "errors" not in result, result
    return [edge["node"] for edge in result["data"]["viewer"]["account"]["webhookEndpoints"]["edges"]]


class TestCreate:
    async def test_an_admin_registers_an_endpoint_and_sees_its_secret_once(self, api: Api) -> None:
        admin = await tenant(api)
        created = await create(api, admin["token"], events=["VOUCHER_REDEEMED", "BALANCE_LOW"], description="CRM")
        assert created["errors"] == []
        assert created["secret"].startswith("whsec_")
        assert len(key_bytes(created["secret"])) == 32
        assert created["endpoint"]["events"] == ["BALANCE_LOW", "VOUCHER_REDEEMED"]
        assert created["endpoint"]["enabled"] is True
        assert created["endpoint"]["description"] == "CRM"
        # then: the list never shows it again, and the database holds it only sealed
        [listed] = await endpoints(api, admin["token"])
        assert listed["id"] == created["endpoint"]["id"]
        assert "secret" not in listed
        stored = await WebhookEndpoint.get(url=NOWHERE, description="CRM")
        assert created["secret"].encode() not in stored.secret_ciphertext
        assert key_bytes(created["secret"]) not in stored.secret_ciphertext

    @pytest.mark.parametrize(
        ("url", "events", "field"),
        [
            (NOWHERE, [], "events"),
            ("ftp://127.0.0.1/x", ["BALANCE_LOW"], "url"),
            ("http://user:pw@127.0.0.1/x", ["BALANCE_LOW"], "url"),
            ("x" * 3000, ["BALANCE_LOW"], "url"),
        ],
    )
    async def test_bad_input_is_a_field_error(self, api: Api, url: str, events: list[str], field: str) -> None:
        admin = await tenant(api)
        created = await create(api, admin["token"], url=url, events=events)
        assert created["endpoint"] is None
        assert created["secret"] is None
        assert created["errors"][0]["code"] == "INVALID"
        assert created["errors"][0]["field"] == ["input", field]

    async def test_a_description_with_bidi_controls_is_refused(self, api: Api) -> None:
        admin = await tenant(api)
        created = await create(api, admin["token"], description="evil\u202etxt")
        assert created["errors"][0]["field"] == ["input", "description"]


class TestProduction:
    @pytest.fixture
    async def production(self, settings: Settings) -> AsyncIterator[Api]:
        from server import create_app

        app = create_app(replace(settings, env="production"))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=loopback_client())
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                yield Api(http)

    @pytest.mark.parametrize(
        "url",
        [
            "http://93.184.215.14/hooks",
            "https://127.0.0.1/hooks",
            "https://localhost/hooks",
            "https://10.0.0.8/hooks",
            "https://169.254.169.254/latest/meta-data",
            "https://100.100.100.200/",
            "https://[::1]/hooks",
            "https://[::ffff:127.0.0.1]/hooks",
            "https://[fd00:ec2::254]/",
        ],
    )
    async def test_only_https_to_public_addresses(self, production: Api, url: str) -> None:
        admin = await tenant(production)
        created = await create(production, admin["token"], url=url)
        assert created["endpoint"] is None
        assert created["errors"][0]["code"] == "INVALID"
        assert created["errors"][0]["field"] == ["input", "url"]

    async def test_a_public_https_url_is_accepted(self, production: Api) -> None:
        admin = await tenant(production)
        created = await create(production, admin["token"], url="https://93.184.215.14/hooks")
        assert created["errors"] == []
        # a later update to a private address is refused the same way
        update = await production(
            UPDATE, {"input": {"id": created["endpoint"]["id"], "url": "https://192.168.0.1/"}}, token=admin["token"]
        )
        assert update["data"]["webhookEndpointUpdate"]["errors"][0]["field"] == ["input", "url"]


class TestRoles:
    async def test_finance_and_api_keys_read_members_see_nothing_only_admin_manages(self, api: Api) -> None:
        admin = await tenant(api)
        created = await create(api, admin["token"])
        endpoint_id = created["endpoint"]["id"]
        finance = await member(api, admin["token"], "FINANCE")
        plain = await member(api, admin["token"], "MEMBER")
        key = (await api(API_KEY_CREATE, {"input": {"name": "crm"}}, token=admin["token"]))["data"]["apiKeyCreate"]
        assert [e["id"] for e in await endpoints(api, finance)] == [endpoint_id]
        assert [e["id"] for e in await endpoints(api, key["secret"])] == [endpoint_id]
        assert await endpoints(api, plain) == []
        assert (await api(NODE, {"id": endpoint_id}, token=plain))["data"]["node"] is None
        for token in (finance, plain, key["secret"]):
            refused = await create(api, token)
            assert refused["errors"][0]["code"] == "PERMISSION_DENIED"
            for document, name in ((ROTATE, "webhookEndpointRotateSecret"), (TEST, "webhookEndpointTest")):
                answer = (await api(document, {"input": {"id": endpoint_id}}, token=token))["data"][name]
                assert answer["errors"][0]["code"] == "PERMISSION_DENIED"
                assert "secret" not in answer or answer["secret"] is None


class TestTenants:
    async def test_another_tenants_endpoint_and_deliveries_answer_as_missing(self, api: Api) -> None:
        a, b = await tenant(api), await tenant(api)
        endpoint_id = (await create(api, a["token"]))["endpoint"]["id"]
        delivery = (await api(TEST, {"input": {"id": endpoint_id}}, token=a["token"]))["data"]["webhookEndpointTest"]
        delivery_id = delivery["delivery"]["id"]
        assert await endpoints(api, b["token"]) == []
        for node_id in (endpoint_id, delivery_id):
            assert (await api(NODE, {"id": node_id}, token=b["token"]))["data"]["node"] is None
        for document, name, node_id in (
            (UPDATE, "webhookEndpointUpdate", endpoint_id),
            (DELETE, "webhookEndpointDelete", endpoint_id),
            (ROTATE, "webhookEndpointRotateSecret", endpoint_id),
            (TEST, "webhookEndpointTest", endpoint_id),
            (RETRY, "webhookDeliveryRetry", delivery_id),
        ):
            variables: dict[str, Any] = {"input": {"id": node_id}}
            if name == "webhookEndpointUpdate":
                variables["input"]["enabled"] = False
            answer = (await api(document, variables, token=b["token"]))["data"][name]
            assert answer["errors"][0]["code"] == "NOT_FOUND", name
        assert await WebhookEndpoint.filter(enabled=True, url=NOWHERE).exists()
        # and A still reads both
        assert (await api(NODE, {"id": delivery_id}, token=a["token"]))["data"]["node"]["eventId"].startswith("evt_")


class TestManage:
    async def test_update_rotate_test_retry_and_delete(self, api: Api) -> None:
        admin = await tenant(api)
        endpoint_id = (await create(api, admin["token"]))["endpoint"]["id"]
        token = admin["token"]
        # update
        changed = await api(
            UPDATE,
            {"input": {"id": endpoint_id, "events": ["DEPOSIT_SUCCEEDED", "VOUCHERS_EXPIRED"], "description": "ERP"}},
            token=token,
        )
        endpoint = changed["data"]["webhookEndpointUpdate"]["endpoint"]
        assert endpoint["events"] == ["DEPOSIT_SUCCEEDED", "VOUCHERS_EXPIRED"]
        assert endpoint["description"] == "ERP"
        # rotate: a new secret, the old one signing for 24 hours more
        rotated = (await api(ROTATE, {"input": {"id": endpoint_id}}, token=token))["data"][
            "webhookEndpointRotateSecret"
        ]
        assert rotated["secret"].startswith("whsec_")
        assert rotated["endpoint"]["previousSecretExpiresAt"]
        # test: a webhook.test delivery, pending
        tested = (await api(TEST, {"input": {"id": endpoint_id}}, token=token))["data"]["webhookEndpointTest"]
        assert tested["delivery"]["eventType"] == "webhook.test"
        assert tested["delivery"]["status"] == "PENDING"
        # disabling fails what waits, visibly; a retry needs it enabled again
        disabled = await api(UPDATE, {"input": {"id": endpoint_id, "enabled": False}}, token=token)
        assert disabled["data"]["webhookEndpointUpdate"]["endpoint"]["disabledReason"]
        [listed] = await endpoints(api, token, status="FAILED")
        [failed] = [edge["node"] for edge in listed["deliveries"]["edges"]]
        assert failed["lastError"] == "The endpoint was disabled."
        assert failed["nextAttemptAt"] is None
        assert (await endpoints(api, token, status="PENDING"))[0]["deliveries"]["edges"] == []
        retry = await api(RETRY, {"input": {"id": failed["id"]}}, token=token)
        assert retry["data"]["webhookDeliveryRetry"]["errors"][0]["code"] == "INVALID"
        await api(UPDATE, {"input": {"id": endpoint_id, "enabled": True}}, token=token)
        retry = await api(RETRY, {"input": {"id": failed["id"]}}, token=token)
        assert retry["data"]["webhookDeliveryRetry"]["delivery"]["status"] == "PENDING"
        assert retry["data"]["webhookDeliveryRetry"]["delivery"]["attempts"] == 0
        # delete: the endpoint and its deliveries are gone
        deleted = await api(DELETE, {"input": {"id": endpoint_id}}, token=token)
        assert deleted["data"]["webhookEndpointDelete"]["deletedId"] == endpoint_id
        assert await endpoints(api, token) == []
        assert not await WebhookDelivery.filter(event_id=failed["eventId"]).exists()
        assert WebhookDeliveryStatus.FAILED.value == "FAILED"
