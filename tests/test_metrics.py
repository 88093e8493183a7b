"""Each metric moves: /metrics of a real app over HTTP, scraped before and after an action."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError

from infra import clock, metrics
from infra.redis import CountingRedis
from models import WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint
from schema import observe
from services.webhook_delivery import DeliveryConfig
from services.webhook_http import Answer
from services.webhook_secrets import SecretCipher, new_secret
from settings import Settings
from tests.support.factories import PASSWORD, SIGN_IN, SIGN_UP, tenant_admin, unique_email
from tests.support.live import served
from tests.support.metrics import Scrape
from tests.support.running import free_port, wait_for
from workers.health import app as worker_endpoint
from workers.webhooks import Dispatcher

VIEWER = "query Viewer { viewer { user { email } } }"
BY_CODE = "query Lookup($code: String!) { voucherByCode(code: $code) { status } }"


class Client:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def scrape(self) -> Scrape:
        response = await self.http.get("/metrics")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        return Scrape(response.text)

    async def gql(self, query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        return response.json()

    async def tenant(self) -> tuple[str, str]:
        email = unique_email("metrics")
        signed_up = await self.gql(SIGN_UP, {"input": {"email": email, "password": PASSWORD, "accountName": "M"}})
        assert signed_up["data"]["signUp"]["errors"] == [], signed_up
        signed_in = await self.gql(SIGN_IN, {"input": {"email": email, "password": PASSWORD}})
        return email, signed_in["data"]["signIn"]["token"]


@pytest.fixture
async def client(app: Any) -> AsyncIterator[Client]:
    async with served(app) as url:
        base = url.replace("ws://", "http://").removesuffix("/graphql")
        async with httpx.AsyncClient(base_url=base, timeout=10.0) as http:
            yield Client(http)


async def test_http_requests_by_route_template_and_status(client: Client) -> None:
    before = await client.scrape()
    assert (await client.http.get("/healthz")).status_code == 200
    assert (await client.http.get("/redeem/VS-6AK81-7BEAW-CX117-HNK6K")).status_code == 200
    assert (await client.http.get("/no/such/VS-6AK81-7BEAW-CX117-HNK6K")).status_code == 404
    after = await client.scrape()

    def moved(**labels: str) -> float:
        return after.value("vouchsafe_http_requests_total", **labels) - before.value(
            "vouchsafe_http_requests_total", **labels
        )

    assert moved(route="/healthz", method="GET", status="200") == 1
    assert moved(route="/redeem/{code:path}", method="GET", status="200") == 1
    assert moved(route="unmatched", method="GET", status="404") == 1
    assert after.value("vouchsafe_http_request_duration_seconds_count", route="/healthz") >= 1
    # the route is the template: no code, no path a client sent, ever becomes a label
    assert "6AK81" not in after.text
    assert "/no/such" not in after.text


async def test_graphql_operations_by_name_type_and_outcome(client: Client) -> None:
    before = await client.scrape()
    email, token = await client.tenant()
    assert (await client.gql(VIEWER, token=token))["data"]["viewer"]["user"]["email"] == email
    wrong = await client.gql(SIGN_IN, {"input": {"email": email, "password": "not the password"}})
    assert wrong["data"]["signIn"]["errors"][0]["code"] == "INVALID_CREDENTIALS", wrong
    assert "errors" in await client.gql("query Guess_bd8f { noSuchField }")
    assert "errors" in await client.gql("{ viewer { user { email } } }")  # anonymous, not signed in
    after = await client.scrape()

    def moved(**labels: str) -> float:
        name = "vouchsafe_graphql_operations_total"
        return after.value(name, **labels) - before.value(name, **labels)

    assert moved(operation="SignUp", type="mutation", outcome="ok") == 1
    assert moved(operation="SignIn", type="mutation", outcome="ok") == 1
    assert moved(operation="Viewer", type="query", outcome="ok") == 1
    assert moved(operation="SignIn", type="mutation", outcome="user_error", code="INVALID_CREDENTIALS") == 1
    assert moved(operation="invalid", outcome="client_error") == 1
    assert moved(operation="anonymous", type="query", outcome="client_error") == 1
    assert (
        after.value("vouchsafe_graphql_operation_duration_seconds_count", operation="SignIn")
        - before.value("vouchsafe_graphql_operation_duration_seconds_count", operation="SignIn")
        == 2
    )
    field = "vouchsafe_graphql_root_field_duration_seconds_count"
    assert (
        after.value(field, field="signIn", type="mutation") - before.value(field, field="signIn", type="mutation") == 2
    )
    # a name that did not validate is not a label, nor an e-mail anywhere
    assert "Guess_bd8f" not in after.text
    assert email not in after.text


async def test_internal_errors_are_counted(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    import services.accounts

    async def boom(**kwargs: Any) -> None:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(services.accounts, "sign_in", boom)
    before = await client.scrape()
    response = await client.http.post(
        "/graphql", json={"query": SIGN_IN, "variables": {"input": {"email": unique_email(), "password": PASSWORD}}}
    )
    after = await client.scrape()
    [error] = response.json()["errors"]
    # the request id of the masked error is the response header's
    assert error["extensions"]["requestId"] == response.headers["X-Request-Id"]
    name = "vouchsafe_graphql_operations_total"
    labels = {"operation": "SignIn", "outcome": "internal_error"}
    assert after.value(name, **labels) - before.value(name, **labels) == 1


def test_operation_names_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(observe, "_names", set())
    monkeypatch.setattr(observe, "MAX_NAMES", 2)
    assert [observe.bounded_name(n, True) for n in ("A", "B", "C", "A")] == ["A", "B", "other", "A"]
    assert observe.bounded_name(None, True) == "anonymous"
    assert observe.bounded_name("D", False) == "invalid"


async def test_request_ids_are_kept_when_sane_and_replaced_otherwise(client: Client) -> None:
    kept = await client.http.get("/healthz", headers={"X-Request-Id": "lb-7f3a.19"})
    assert kept.headers["X-Request-Id"] == "lb-7f3a.19"
    replaced = await client.http.get("/healthz", headers={"X-Request-Id": "x" * 65})
    assert replaced.headers["X-Request-Id"] != "x" * 65
    assert len(replaced.headers["X-Request-Id"]) == 16
    assert len((await client.http.get("/healthz")).headers["X-Request-Id"]) == 16


async def test_response_cache_hits_and_misses(client: Client) -> None:
    _, token = await client.tenant()
    before = await client.scrape()
    for _ in range(3):
        assert (await client.gql(VIEWER, token=token))["data"]["viewer"]
    after = await client.scrape()
    name = "vouchsafe_response_cache_lookups_total"
    assert after.value(name, result="miss") - before.value(name, result="miss") == 1
    assert after.value(name, result="hit") - before.value(name, result="hit") == 2


async def test_rate_limit_refusals_by_kind(client: Client) -> None:
    email, _ = await client.tenant()
    before = await client.scrape()
    refused = 0
    for _ in range(12):
        answer = await client.gql(SIGN_IN, {"input": {"email": email, "password": "wrong"}})
        refused += answer.get("errors", [{}])[0].get("extensions", {}).get("code") == "RATE_LIMITED" or any(
            e["code"] == "RATE_LIMITED" for e in (answer.get("data") or {}).get("signIn", {}).get("errors", [])
        )
    for _ in range(12):
        await client.gql(BY_CODE, {"code": "VS-00000-00000-00000-00000"})
    after = await client.scrape()
    name = "vouchsafe_rate_limit_refusals_total"
    assert refused >= 1
    assert after.value(name, kind="sign_in") - before.value(name, kind="sign_in") == refused
    assert after.value(name, kind="redemption") - before.value(name, kind="redemption") >= 1


async def test_background_work_and_backlog(client: Client, settings: Settings) -> None:
    if not settings.embedded_redis:
        pytest.skip("the in-process worker runs only on the embedded default (the worker's own test covers Redis)")
    before = await client.scrape()
    await client.tenant()  # a welcome e-mail through the outbox and the in-process worker

    async def sent() -> Scrape | None:
        now = await client.scrape()
        return (
            now
            if now.value("vouchsafe_outbox_runs_total", task="send_email", outcome="done")
            > before.value("vouchsafe_outbox_runs_total", task="send_email", outcome="done")
            else None
        )

    # The app's own in-process worker is what is measured here, so the test waits for it.
    after = await wait_for(sent, within=20)
    assert after.value("vouchsafe_jobs_total", task="run_outbox", outcome="ok") > before.value(
        "vouchsafe_jobs_total", task="run_outbox", outcome="ok"
    )
    assert after.value("vouchsafe_job_duration_seconds_count", task="run_outbox") >= 1
    assert after.value("vouchsafe_outbox_run_duration_seconds_count", task="send_email") >= 1
    assert after.has("vouchsafe_outbox_messages", status="DONE")
    assert after.has("vouchsafe_outbox_oldest_pending_age_seconds")
    assert after.has("vouchsafe_queue_jobs")


async def test_live_hub_gauges_are_exposed(client: Client) -> None:
    scrape = await client.scrape()
    assert scrape.value("vouchsafe_live_connected") == 1
    assert scrape.has("vouchsafe_live_subscribers")
    assert scrape.has("vouchsafe_live_resubscriptions_total")


@pytest.mark.postgres
async def test_database_pool_gauges(client: Client, app: Any) -> None:
    await client.tenant()
    scrape = await client.scrape()
    assert scrape.value("vouchsafe_db_pool_max_connections") == app.state.resources.settings.db_pool_size
    assert scrape.has("vouchsafe_db_pool_connections_in_use")
    assert scrape.has("vouchsafe_db_pool_waiting")


async def test_redis_errors_are_counted(client: Client) -> None:
    before = (await client.scrape()).value("vouchsafe_redis_errors_total", error="ConnectionError")
    nobody = CountingRedis(connection_pool=ConnectionPool.from_url(f"redis://127.0.0.1:{free_port()}/0"))
    with pytest.raises(RedisConnectionError):
        await nobody.ping()
    await nobody.aclose()
    after = await client.scrape()
    assert after.value("vouchsafe_redis_errors_total", error="ConnectionError") - before >= 1


class LocalResolver:
    async def resolve(self, host: str, port: int) -> list[str]:
        return ["127.0.0.1"]


async def endpoint_with_one_delivery(account_id: int, path: str, cipher: SecretCipher) -> None:
    now = clock.now()
    endpoint = await WebhookEndpoint.create(
        account_id=account_id,
        url=f"http://hooks.test{path}",
        events=["BALANCE_LOW"],
        secret_ciphertext=b"",
        created_at=now,
        updated_at=now,
    )
    endpoint.secret_ciphertext = cipher.seal(new_secret(), endpoint.id)
    await endpoint.save(update_fields=["secret_ciphertext"])
    await WebhookDelivery.create(
        endpoint_id=endpoint.id,
        account_id=account_id,
        event_id=f"evt_{secrets.token_hex(8)}",
        event_type="webhook.test",
        payload="{}",
        status=WebhookDeliveryStatus.PENDING,
        next_attempt_at=now,
        created_at=now,
    )


class AnsweringSender:
    def __init__(self, status: int) -> None:
        self.status = status

    async def post(self, url: Any, address: str, headers: dict[str, str], body: bytes) -> Answer:
        return Answer(status=self.status, body="")

    async def aclose(self) -> None:
        return None


async def test_webhook_deliveries_by_outcome(app: Any) -> None:
    resources = app.state.resources
    endpoint_app = worker_endpoint(resources.redis, resources.settings.queue_name)

    async def scrape() -> Scrape:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=endpoint_app), base_url="http://w") as http:
            return Scrape((await http.get("/metrics")).text)

    actor = await tenant_admin()
    assert actor.account_id is not None
    cipher = SecretCipher(secrets.token_bytes(32))
    before = await scrape()
    for path, status in (("/ok", 204), ("/down", 503)):
        await endpoint_with_one_delivery(actor.account_id, path, cipher)
        config = DeliveryConfig(cipher, AnsweringSender(status), LocalResolver(), allow_insecure=True, public_url="x")
        await Dispatcher(config).drain(within=30)
    after = await scrape()
    name = "vouchsafe_webhook_deliveries_total"
    # at least: the run's database is shared, and other tests' due deliveries go out too
    assert after.value(name, outcome="delivered") - before.value(name, outcome="delivered") >= 1
    assert after.value(name, outcome="retry") - before.value(name, outcome="retry") >= 1


def test_a_killed_process_live_gauges_are_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()
    for pid in (dead.pid, os.getpid()):
        (tmp_path / f"gauge_livesum_{pid}.db").write_bytes(b"")
    (tmp_path / f"counter_{dead.pid}.db").write_bytes(b"")
    assert metrics.forget_dead_processes() == 1
    left = sorted(path.name for path in tmp_path.iterdir())
    assert left == sorted([f"counter_{dead.pid}.db", f"gauge_livesum_{os.getpid()}.db"])  # counts stay counted
