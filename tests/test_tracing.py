"""Traces: request, operation, SQL, Redis and job spans, the job linked to the request that wrote its outbox row."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from infra import tracing
from tests.support.api import Api
from tests.support.factories import PASSWORD, sign_up, unique_email
from tests.support.running import run_jobs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.setup("vouchsafe-test", exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.disable()


def named(exporter: InMemorySpanExporter, prefix: str) -> list[Any]:
    return [span for span in exporter.get_finished_spans() if span.name.startswith(prefix)]


async def test_a_request_its_operation_statements_and_its_job(spans: InMemorySpanExporter, burst_api: Api) -> None:
    api = burst_api
    email = unique_email("trace")
    response = await api.http.post(
        "/graphql",
        json={
            "query": "mutation SignUp($input: SignUpInput!) { signUp(input: $input) { errors { code } } }",
            "variables": {"input": {"email": email, "password": PASSWORD, "accountName": "Traced"}},
        },
        headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    )
    assert response.json()["data"]["signUp"]["errors"] == [], response.text

    await run_jobs(api.app)
    [outbox_span] = named(spans, "outbox send_email")
    [request] = [s for s in named(spans, "POST /graphql")]
    # the caller's trace continues: its trace id, its span as the parent
    assert f"{request.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert request.parent is not None
    assert f"{request.parent.span_id:016x}" == "b7ad6b7169203331"
    assert request.attributes["http.route"] == "/graphql"
    assert request.attributes["http.response.status_code"] == 200
    [operation] = named(spans, "mutation SignUp")
    assert operation.parent.span_id == request.context.span_id
    statements = [
        s for s in spans.get_finished_spans() if str(s.attributes.get("db.system")) in ("sqlite", "postgresql")
    ]
    inserts = [s for s in statements if s.context.trace_id == request.context.trace_id and s.name == "INSERT"]
    assert inserts, [s.name for s in statements]
    assert all(email not in str(s.attributes) for s in statements)  # the statement, not its values
    redis = [s for s in spans.get_finished_spans() if s.attributes.get("db.system") == "redis"]
    assert redis
    assert all(s.name.startswith("redis ") for s in redis)
    # the job is its own trace, linked to the request that wrote the row
    assert outbox_span.context.trace_id != request.context.trace_id
    assert [link.context.trace_id for link in outbox_span.links] == [request.context.trace_id]
    [job] = [s for s in named(spans, "job run_outbox") if s.context.span_id == outbox_span.parent.span_id]
    assert job.attributes["job.task"] == "run_outbox"


async def test_untraced_writes_leave_no_trace_context(api: Api) -> None:
    assert not tracing.enabled
    assert tracing.traceparent() is None
    await sign_up(api)


def test_unset_means_no_sdk_imported(tmp_path: Path) -> None:
    script = (
        "import sys, asyncio, httpx\n"
        "from server import create_app\n"
        "async def main():\n"
        "    app = create_app()\n"
        "    async with app.router.lifespan_context(app):\n"
        "        t = httpx.ASGITransport(app=app)\n"
        "        async with httpx.AsyncClient(transport=t, base_url='http://x') as h:\n"
        "            assert (await h.post('/graphql', json={'query': '{ __typename }'})).status_code == 200\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    env = {"PATH": os.environ.get("PATH", ""), "VOUCHSAFE_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
