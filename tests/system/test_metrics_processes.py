"""Metrics as deployed: `serve --workers 2` answers for both processes; `vouchsafe worker` has its own endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from settings import Settings
from tests.support.api import Api
from tests.support.factories import tenant
from tests.support.metrics import Scrape
from tests.support.processes import START_TIMEOUT, command, deployed_env, poll, serving, stop
from tests.support.running import free_port, wait_for
from tests.support.stores import REDIS_URL

pytestmark = pytest.mark.postgres


def scrape(base_url: str) -> Scrape:
    # A fresh connection each time: any of the processes may answer.
    with httpx.Client(base_url=base_url, timeout=10.0) as fresh:
        response = fresh.get("/metrics")
    assert response.status_code == 200, response.text
    return Scrape(response.text)


def test_serve_two_workers_count_every_process(tmp_path: Path, database_url: str, queue_name: str) -> None:
    data_dir = tmp_path / "data"
    stale = data_dir / "prometheus-multiproc" / "counter_1.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left by an earlier run")
    assert REDIS_URL
    env = {"DATABASE_URL": database_url, "REDIS_URL": REDIS_URL, "VOUCHSAFE_QUEUE_NAME": queue_name}
    with serving(data_dir, tmp_path / "serve.log", extra_env=env, extra_args=("--workers", "2")) as http:
        base = str(http.base_url)
        poll(lambda: len(pids_with_files(data_dir)) >= 2 or None, timeout=START_TIMEOUT, what="both processes' files")
        before = scrape(base)
        for _ in range(12):
            with httpx.Client(base_url=base, timeout=10.0) as fresh:
                assert fresh.get("/healthz").status_code == 200
        after = scrape(base)
        labels = {"route": "/healthz", "method": "GET", "status": "200"}
        # Whichever process answered the scrape, it counts the other's requests too.
        assert (
            after.value("vouchsafe_http_requests_total", **labels)
            - before.value("vouchsafe_http_requests_total", **labels)
            == 12
        )
        assert after.value("vouchsafe_live_connected") == 1
    assert not stale.exists()  # the directory was emptied at start


def pids_with_files(data_dir: Path) -> set[str]:
    names = (p.name for p in (data_dir / "prometheus-multiproc").glob("*.db"))
    return {m.group(1) for name in names if (m := re.search(r"_(\d+)\.db$", name))}


@contextlib.contextmanager
def worker_process(settings: Settings, tmp_path: Path, port: int) -> Any:
    assert REDIS_URL
    env = deployed_env(settings, tmp_path / "worker-data", redis_url=REDIS_URL, VOUCHSAFE_WORKER_METRICS_PORT=str(port))
    log_path = tmp_path / "worker.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [*command(), "worker"], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield process, log_path
    finally:
        stop(process)


async def test_worker_endpoint_health_and_job_metrics(settings: Settings, api: Api, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with worker_process(settings, tmp_path, port) as (process, log_path):

        def up() -> bool:
            assert process.poll() is None, log_path.read_text()
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            return False

        poll(up, timeout=START_TIMEOUT, what="worker /healthz")
        async with httpx.AsyncClient(base_url=base, timeout=5) as http:
            ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ok", "database": "ok", "database_pool": "ok", "redis": "ok"}
        before = scrape(base)
        await tenant(api)  # its welcome e-mail is a job this worker runs

        async def ran() -> Scrape | None:  # the loop stays free for the app's relay meanwhile
            now = await asyncio.to_thread(scrape, base)
            done = {"task": "send_email", "outcome": "done"}
            moved = now.value("vouchsafe_outbox_runs_total", **done) > before.value(
                "vouchsafe_outbox_runs_total", **done
            )
            return now if moved else None

        # Polled: the job runs in a `vouchsafe worker` process.
        after = await wait_for(ran, within=30, interval=0.3)
        ok = {"task": "run_outbox", "outcome": "ok"}
        assert after.value("vouchsafe_jobs_total", **ok) > before.value("vouchsafe_jobs_total", **ok)
        assert after.value("vouchsafe_job_duration_seconds_count", task="run_outbox") >= 1
        for name in ("vouchsafe_queue_jobs", "vouchsafe_outbox_oldest_pending_age_seconds"):
            assert after.has(name), name
        assert after.value("vouchsafe_db_pool_max_connections") == 20  # the default; the test's own is not passed
