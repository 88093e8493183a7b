"""Prometheus text exposition of the state operators watch (outbox backlog and failures)."""

from __future__ import annotations

from tortoise.functions import Count

from models import OutboxMessage, OutboxStatus


async def render() -> str:
    rows = await OutboxMessage.annotate(n=Count("id")).group_by("status").values_list("status", "n")
    counts = {str(status): int(n) for status, n in rows}
    lines = [
        "# HELP vouchsafe_outbox_messages Outbox messages by status (FAILED needs an operator).",
        "# TYPE vouchsafe_outbox_messages gauge",
    ]
    for status in OutboxStatus:
        lines.append(f'vouchsafe_outbox_messages{{status="{status.value}"}} {counts.get(status.value, 0)}')
    return "\n".join(lines) + "\n"
