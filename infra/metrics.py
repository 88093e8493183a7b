"""Prometheus text exposition of the state operators watch (outbox backlog and failures)."""

from __future__ import annotations

from collections.abc import Mapping

from infra.live import Hub


def render(outbox: Mapping[str, int], hub: Hub | None = None) -> str:
    """The outbox's messages by status and this process's live hub, in Prometheus' text format."""
    lines = [
        "# HELP vouchsafe_outbox_messages Outbox messages by status (FAILED needs an operator).",
        "# TYPE vouchsafe_outbox_messages gauge",
    ]
    for status, count in outbox.items():
        lines.append(f'vouchsafe_outbox_messages{{status="{status}"}} {count}')
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
