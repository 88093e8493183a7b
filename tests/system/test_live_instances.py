"""Live updates across processes: two API instances and a worker on PostgreSQL + Redis.

A client subscribed on instance A sees, within a second, a redemption made through
instance B, and the PDF that the separate worker process finishes.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from settings import Settings
from tests.support.api import Api
from tests.support.factories import line, order, partner, tenant
from tests.support.live import ACCOUNT_UPDATED, ORDER_UPDATED, Stream, latest_event, order_of, session_for
from tests.support.processes import Workers, command, stop, worker_env
from tests.support.running import free_port
from tests.support.stores import REDIS_URL

pytestmark = pytest.mark.postgres

START_TIMEOUT = 30.0
REVEAL = """mutation R($id: ID!) { voucherCodesReveal(input: {orderId: $id}) { codes { code } errors { code } } }"""
REDEEM = """mutation R($input: VoucherRedeemInput!) { voucherRedeem(input: $input) {
  certificateRequest { id } errors { code message } } }"""
WITHIN_A_SECOND = 1.0


@contextlib.contextmanager
def api_instance(settings: Settings, root: Path, name: str) -> Iterator[str]:
    """`vouchsafe serve` on PostgreSQL + Redis on a free loopback port; its base URL."""
    port = free_port()
    data_dir = root / name
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = root / f"{name}.log"
    assert REDIS_URL
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [*command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=worker_env(settings, data_dir, redis_url=REDIS_URL),
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        # Polled: the API instance is a process of its own; ready once /readyz answers.
        while True:
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}:\n{log_path.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} did not start:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield base
    finally:
        stop(process)


@pytest.fixture
async def instances(settings: Settings, tmp_path: Path, db: None) -> AsyncIterator[tuple[Api, Api, str]]:
    """Clients of instances A and B, A's WebSocket URL; one separate worker process."""
    workers = Workers(settings, tmp_path)
    assert REDIS_URL
    with api_instance(settings, tmp_path, "api-a") as a, api_instance(settings, tmp_path, "api-b") as b:
        workers.start(redis_url=REDIS_URL)
        try:
            async with (
                httpx.AsyncClient(base_url=a, timeout=10) as http_a,
                httpx.AsyncClient(base_url=b, timeout=10) as http_b,
            ):
                yield Api(http_a), Api(http_b), a.replace("http://", "ws://") + "/graphql"
        finally:
            workers.stop()


async def test_a_client_on_one_instance_sees_changes_made_through_another_and_by_the_worker(
    instances: tuple[Api, Api, str],
) -> None:
    on_a, on_b, ws_a = instances
    p = await partner(on_a)
    customer = await tenant(on_b)
    async with session_for(ws_a, p["token"]) as session:
        account = Stream(session, ACCOUNT_UPDATED)
        before = (await account.next())["accountUpdated"]["balance"]["amount"]

        # an order placed through B: A's account stream sees the debit
        result = await order(on_b, p["token"], line("BASIC_OV", 3), paymentMethod="ACCOUNT_BALANCE")
        assert result["errors"] == [], result
        placed = time.monotonic()
        arrived, _ = await account.until(lambda m: m["accountUpdated"]["balance"]["amount"] != before)
        assert arrived - placed < WITHIN_A_SECOND

        order_id = result["order"]["id"]
        stream = Stream(session, ORDER_UPDATED, {"id": order_id})
        assert order_of(await stream.next())["statusCounts"]["validUnused"] == 3

        # the worker process renders and stores the PDF
        _, ready = await stream.until(lambda m: order_of(m)["pdf"]["status"] == "READY", within=60)
        assert latest_event(order_of(ready)) == "PDF_READY"

        # a customer redeems a code through B
        codes = (await on_b(REVEAL, {"id": order_id}, token=p["token"]))["data"]["voucherCodesReveal"]["codes"]
        redeemed = await on_b(
            REDEEM, {"input": {"code": codes[0]["code"], "commonName": "b.example.com"}}, token=customer["token"]
        )
        done = time.monotonic()
        assert redeemed["data"]["voucherRedeem"]["errors"] == [], redeemed
        arrived, used = await stream.until(lambda m: order_of(m)["statusCounts"]["validUsed"] == 1)
        assert arrived - done < WITHIN_A_SECOND, arrived - done
        assert latest_event(order_of(used)) == "VOUCHER_REDEEMED"
        await stream.close()
        await account.close()
