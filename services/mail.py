"""E-mail: rendered from templates in the account's locale, sent through a Mailer port.

Each message is sent by an outbox task and carries the outbox id in its
Message-ID, so a repeated delivery can be recognised (and the file adapter
simply writes the same file again).
"""

from __future__ import annotations

import os
import tempfile
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiosmtplib
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from services.outbox import Handler

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates" / "email"
LOCALES = ("en", "de", "fr")
SEND_EMAIL = "send_email"

_env = Environment(
    loader=FileSystemLoader(TEMPLATE_DIR),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


class FileMailer:
    """Writes each message as an .eml file named by its outbox id (the embedded default)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: EmailMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = message["X-Vouchsafe-Outbox-Id"] or os.urandom(8).hex()
        target = self.directory / f"{name}.eml"
        # Write then rename: a reader never sees half a message, a rerun replaces it.
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".part")
        with os.fdopen(fd, "wb") as fh:
            fh.write(bytes(message))
        os.replace(tmp, target)


class SmtpMailer:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (465 if parts.scheme == "smtps" else 25)
        self.use_tls = parts.scheme == "smtps"
        self.username = parts.username
        self.password = parts.password

    async def send(self, message: EmailMessage) -> None:
        await aiosmtplib.send(
            message,
            hostname=self.host,
            port=self.port,
            use_tls=self.use_tls,
            username=self.username,
            password=self.password,
            timeout=30,
        )


def mailer_for(smtp_url: str | None, mail_dir: Path) -> Mailer:
    return SmtpMailer(smtp_url) if smtp_url else FileMailer(mail_dir)


def email_payload(template: str, *, to: list[str], locale: str, context: dict[str, Any]) -> dict[str, Any]:
    """The outbox payload of one e-mail; rendered only when it is sent."""
    return {"template": template, "to": to, "locale": locale if locale in LOCALES else "en", "context": context}


def render(template: str, locale: str, context: dict[str, Any]) -> tuple[str, str, str]:
    """(subject, text, html) of a template in a locale.

    Each e-mail is written once, as text (`Subject: …`, a blank line, the body); its
    HTML part is that text in the shared layout, escaped there, so user text in a
    message can never become markup.
    """
    text = _env.get_template(f"{template}.{locale}.txt").render(**context)
    head, _, body = text.partition("\n\n")
    subject = head.removeprefix("Subject: ").strip()
    paragraphs = [p.splitlines() for p in body.strip().split("\n\n")]
    html = _env.get_template("_layout.html").render(locale=locale, subject=subject, paragraphs=paragraphs)
    return subject, body, html


def build_message(payload: dict[str, Any], *, message_id: int, sender: str) -> EmailMessage:
    subject, text, html = render(payload["template"], payload["locale"], payload["context"])
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(payload["to"])
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = f"<outbox-{message_id}@vouchsafe>"
    message["X-Vouchsafe-Outbox-Id"] = str(message_id)
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


def send_email_handler(mailer: Mailer, sender: str) -> Handler:
    """The outbox handler that renders and sends one e-mail."""

    async def handle(payload: dict[str, Any], message_id: int) -> None:
        await mailer.send(build_message(payload, message_id=message_id, sender=sender))

    return handle
