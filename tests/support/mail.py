"""An SMTP server's inbox in the test process (aiosmtpd)."""

from __future__ import annotations

import email
import email.policy
from typing import Any


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"
