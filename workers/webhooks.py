"""The webhook dispatcher of a worker process: due deliveries sent beside the job queue, within bounds.

Deliveries are not arq jobs. A worker's arq slots (max_jobs) are shared with the PDF
and e-mail jobs, and a dead endpoint holds a slot for its whole timeout: ten of them
would stop every other job of the worker. The dispatcher is a task of its own in each
worker process, reading due deliveries from the database (services.webhook_delivery),
so a Redis outage does not stop them either. Its bounds, per process:

- at most MAX_IN_FLIGHT attempts at once in all;
- at most PER_ENDPOINT at once to one endpoint (and a poll takes no more of one);
- endpoints whose recent attempts all failed share at most FAILING_SHARE of the slots,
  and healthy endpoints' deliveries are taken first, so a slow or dead endpoint leaves
  the others at least MAX_IN_FLIGHT - FAILING_SHARE slots.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from infra.waits import woken
from services import webhook_delivery
from services.webhook_delivery import DeliveryConfig, Outcome
from workers.metrics import WEBHOOK_DELIVERIES

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 16
PER_ENDPOINT = 2
FAILING_SHARE = 8
POLL_SECONDS = 0.5

OnOutcome = Callable[[Outcome], Awaitable[None]]


@dataclass(frozen=True)
class _Claimed:
    delivery_id: int
    lease_end: datetime  # the claim's mark: what `release` compares
    endpoint_id: int
    failing: bool


class Dispatcher:
    def __init__(
        self,
        config: DeliveryConfig,
        *,
        on_outcome: OnOutcome | None = None,
        max_in_flight: int = MAX_IN_FLIGHT,
        per_endpoint: int = PER_ENDPOINT,
        failing_share: int = FAILING_SHARE,
    ) -> None:
        self.config = config
        self.on_outcome = on_outcome
        self.max_in_flight = max_in_flight
        self.per_endpoint = per_endpoint
        self.failing_share = failing_share
        self.running: dict[asyncio.Task[None], _Claimed] = {}
        self.outcomes: Counter[str] = Counter()  # delivered / retry / failed, for logs and metrics
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    async def fill(self) -> int:
        """Start what is due, within the bounds; how many attempts started."""
        free = self.max_in_flight - len(self.running)
        if free <= 0:
            return 0
        per_endpoint = Counter(claimed.endpoint_id for claimed in self.running.values())
        failing = sum(1 for claimed in self.running.values() if claimed.failing)
        full = {endpoint for endpoint, n in per_endpoint.items() if n >= self.per_endpoint}
        started = 0
        for due in await webhook_delivery.due(limit=free * 2, per_endpoint=self.per_endpoint, exclude=full):
            if started >= free:
                break
            if per_endpoint[due.endpoint_id] >= self.per_endpoint:
                continue
            if due.failing and failing >= self.failing_share:
                continue
            lease_end = await webhook_delivery.claim(due.id)
            if lease_end is None:
                continue  # another worker took it
            task = asyncio.create_task(self._attempt(due.id))
            self.running[task] = _Claimed(due.id, lease_end, due.endpoint_id, due.failing)
            task.add_done_callback(self._finished)
            per_endpoint[due.endpoint_id] += 1
            failing += due.failing
            started += 1
        return started

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.running.pop(task, None)
        self._wake.set()  # a slot is free: look again at once

    async def _attempt(self, delivery_id: int) -> None:
        try:
            outcome = await webhook_delivery.attempt(delivery_id, self.config)
        except Exception:  # the lease lapses and another attempt follows: logged, never lost
            log.exception("webhook delivery %s: attempt not recorded", delivery_id)
            return
        if outcome is None:
            return
        result = "delivered" if outcome.delivered else "failed" if outcome.final else "retry"
        self.outcomes[result] += 1
        WEBHOOK_DELIVERIES.labels(result).inc()
        if self.on_outcome is not None:
            try:
                await self.on_outcome(outcome)
            except Exception as exc:
                log.warning("webhook outcome hook failed: %s", exc)

    async def run_forever(self, *, interval: float = POLL_SECONDS) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self.fill()
            except Exception as exc:  # the database is away: deliveries wait in their table
                log.warning("webhook dispatch failed, retrying in %.1fs: %s", interval, exc)
            await woken(self._wake, interval)

    async def drain(self, *, within: float = 30.0) -> None:
        """Send everything due now and wait for it (tests; a burst-mode worker)."""
        async with asyncio.timeout(within):
            while True:
                self._wake.clear()
                if not await self.fill() and not self.running:
                    return
                # An attempt that ended while fill counted the slots freed one it did not see: look again.
                if self.running and not self._wake.is_set():
                    await asyncio.wait(list(self.running), return_when=asyncio.FIRST_COMPLETED)

    async def stop(self, loop: asyncio.Task[None] | None = None, *, grace: float = 5.0) -> None:
        """End `loop` (run_forever's task) between two looks, let attempts in flight end for a moment.

        Cancelled mid-look, the loop could have claimed a delivery and not yet started its
        attempt: unsent until its lease lapsed. An attempt cut off here is handed back, due
        again at once for any worker (with the same webhook-id: the endpoint may have had
        it); when the database cannot take that, its lease lapses as before.
        """
        self._stopping = True
        self._wake.set()
        if loop is not None:
            _, stuck = await asyncio.wait({loop}, timeout=grace)
            for task in stuck:
                task.cancel()
            await asyncio.gather(loop, return_exceptions=True)
        claims = dict(self.running)
        if claims:
            await asyncio.wait(claims, timeout=grace)
        for task in claims:
            task.cancel()
        await asyncio.gather(*claims, return_exceptions=True)
        cut_off = [claimed for task, claimed in claims.items() if task.cancelled()]
        try:
            async with asyncio.timeout(grace):
                for claimed in cut_off:
                    await webhook_delivery.release(claimed.delivery_id, claimed.lease_end)
        except Exception as exc:  # the database is away (or slow): those wait out their lease
            log.warning(
                "webhook deliveries %s not handed back (%s)", [c.delivery_id for c in cut_off], type(exc).__name__
            )
