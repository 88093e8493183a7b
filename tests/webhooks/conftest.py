"""The webhook tests' fixtures: a receiver process, the app without a worker, the worker's dispatcher."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from settings import Settings
from tests.support.api import Api, without_worker
from tests.support.webhook_receiver import Receiver
from workers.tasks import webhook_dispatcher
from workers.webhooks import Dispatcher


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path) as running:
        yield running


@pytest.fixture
def insecure(settings: Settings) -> Settings:
    return replace(settings, webhooks_allow_insecure=True)


@pytest.fixture
async def api(insecure: Settings) -> AsyncIterator[Api]:
    async with without_worker(insecure) as api:  # the test sends the webhooks (dispatcher) and runs the jobs (run_jobs)
        yield api


@pytest.fixture
async def dispatcher(api: Api, insecure: Settings) -> AsyncIterator[Dispatcher]:
    """The worker's webhook dispatcher, driven by the test: `drain()` sends what is due now and waits for it."""
    sending = webhook_dispatcher(insecure, api.app.state.resources.redis)
    try:
        yield sending
    finally:
        await sending.stop()
        await sending.config.sender.aclose()
