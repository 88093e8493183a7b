"""A background loop's bounded wait for its wake-up event, which never loses the task's cancellation.

Python 3.11's `asyncio.wait_for` returns the awaited result when its task is cancelled in the
same moment the result arrives: the cancellation is lost (CPython gh-86296; 3.12 rebuilt
`wait_for` on `asyncio.timeout`). A loop woken by its event just as the server cancelled it
went round again and waited out its full bound: `vouchsafe serve` took 5 s more to stop and
left the outbox relay running (seen in the PostgreSQL suite's teardowns). `asyncio.timeout`
keeps an outside cancellation.
"""

from __future__ import annotations

import asyncio


async def woken(event: asyncio.Event, within: float) -> bool:
    """True when the event is set within `within` seconds, False when the time runs out.

    A cancellation that an await below swallowed during the loop's turn (the same 3.11 fault
    in a library's `wait_for`) is still counted on the task: it is honoured here, not waited out.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    try:
        async with asyncio.timeout(within):
            await event.wait()
    except TimeoutError:
        return False
    return True
