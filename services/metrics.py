"""Prometheus text exposition of the state operators watch (outbox backlog and failures)."""

from __future__ import annotations

from tortoise.functions import Count

from models import OutboxMessage, OutboxStatus
from services.live import Hub


async def render(hub: Hub | None = None) -> str:
    rows = await OutboxMessage.annotate(n=Count("id")).group_by("status").values_list("status", "n")
    counts = {str(status): int(n) for status, n in rows}
    lines = [
        "# HELP vouchsafe_outbox_messages Outbox messages by status (FAILED needs an operator).",
        "# TYPE vouchsafe_outbox_messages gauge",
    ]
    for status in OutboxStatus:
        lines.append(f'vouchsafe_outbox_messages{{status="{status.value}"}} {counts.get(status.value, 0)}')
    if hub is not None:  # this process's live updates
        lines += [
            "# HELP vouchsafe_live_subscribers Subscriptions this API process is streaming.",
            "# TYPE vouchsafe_live_subscribers gauge",
            f"vouchsafe_live_subscribers {hub.subscriber_count}",
            "# HELP vouchsafe_live_connected Whether this process holds its Redis subscription to change events.",
            "# TYPE vouchsafe_live_connected gauge",
            f"vouchsafe_live_connected {int(hub.connected.is_set())}",
            "# HELP vouchsafe_live_resubscriptions_total Times the subscription was lost and made again.",
            "# TYPE vouchsafe_live_resubscriptions_total counter",
            f"vouchsafe_live_resubscriptions_total {hub.reconnects}",
        ]
    return "\n".join(lines) + "\n"
