"""The outbox relay loop: after each commit that wrote outbox rows, and every sweep interval."""

from __future__ import annotations

import logging

from infra.waits import woken
from services import outbox

log = logging.getLogger(__name__)


async def relay_forever(queue: outbox.JobQueue, *, interval: float) -> None:
    event = outbox.listen()
    try:
        while True:
            event.clear()
            try:
                relayed = await outbox.relay_pending(queue)
                if relayed:
                    log.debug("relayed %d outbox messages", relayed)
            except Exception as exc:  # broker or database down: the rows wait for the next sweep
                log.warning("outbox relay failed, retrying in %.1fs: %s", interval, exc)
            await woken(event, interval)
    finally:
        outbox.unlisten(event)
