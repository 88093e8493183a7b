"""The alert rules, the Grafana dashboard and docs/operations.md name only metrics a real scrape has."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from workers.health import app as worker_endpoint

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
METRIC = re.compile(r"\bvouchsafe_[a-z_]+[a-z]\b")
HISTOGRAM_SAMPLES = ("_bucket", "_count", "_sum")


def exposed(text: str) -> set[str]:
    """Every metric name a scrape declares (its TYPE lines), with a histogram's sample names."""
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        names.add(name)
        if kind == "histogram":
            names.update(name + suffix for suffix in HISTOGRAM_SAMPLES)
    return names


@pytest.fixture
async def scraped(app: Any) -> set[str]:
    """The API's /metrics and a worker's, from real apps."""
    resources = app.state.resources
    worker = worker_endpoint(resources.redis, resources.settings.queue_name)
    names: set[str] = set()
    for asgi in (app, worker):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://x") as http:
            response = await http.get("/metrics")
            assert response.status_code == 200, response.text
            names |= exposed(response.text)
    return names


def test_the_alert_rules_are_prometheus_rules() -> None:
    rules = yaml.safe_load((DOCS / "prometheus" / "vouchsafe-alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {
        "VouchsafeOutboxBacklog",
        "VouchsafeJobsFailing",
        "VouchsafeInternalErrors",
        "VouchsafeRedemptionGuessing",
        "VouchsafeRedeemSlow",
    } <= alerts
    assert all(rule["expr"] and METRIC.search(rule["expr"]) for group in rules["groups"] for rule in group["rules"])


def test_the_dashboard_is_grafana_json() -> None:
    dashboard = json.loads((DOCS / "grafana" / "vouchsafe.json").read_text())
    assert dashboard["title"] == "vouchsafe"
    assert len(dashboard["panels"]) >= 10
    assert all(target["expr"] for panel in dashboard["panels"] for target in panel["targets"])


@pytest.mark.parametrize(
    "document", ["prometheus/vouchsafe-alerts.yml", "grafana/vouchsafe.json", "operations.md"], ids=str
)
async def test_every_metric_named_is_in_a_real_scrape(document: str, scraped: set[str]) -> None:
    named = set(METRIC.findall((DOCS / document).read_text()))
    assert len(named) >= 5, named
    assert named - scraped == set(), sorted(scraped)
