"""Log setup: the text format (default) or one JSON object a line, with the request's context.

The request id, the GraphQL operation's name and the account id live in context
variables, set by the HTTP layer and the schema, so every record written while a
request runs carries them, whichever logger wrote it. Every line goes through the
given `mask` (codes, tokens, secrets) after formatting, exception text included.
"""

from __future__ import annotations

import contextvars
import datetime
import logging
from collections.abc import Callable
from typing import Any

import orjson

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
OPERATION: contextvars.ContextVar[str | None] = contextvars.ContextVar("operation", default=None)
ACCOUNT_ID: contextvars.ContextVar[int | None] = contextvars.ContextVar("account_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")

Mask = Callable[[str], str]


def _unmasked(text: str) -> str:
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message and what is known of the request."""

    def __init__(self, mask: Mask = _unmasked) -> None:
        super().__init__()
        self.mask = mask

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": self.mask(record.getMessage()),
        }
        for key, var in (("request_id", REQUEST_ID), ("operation", OPERATION), ("account_id", ACCOUNT_ID)):
            value = var.get()
            if value is not None:
                entry[key] = value
        duration = getattr(record, "duration_ms", None)
        if duration is not None:
            entry["duration_ms"] = duration
        if record.exc_info:
            entry["exception"] = self.mask(self.formatException(record.exc_info))
        return orjson.dumps(entry).decode()


class MaskingTextFormatter(logging.Formatter):
    """The text format, masked like the JSON one (a secret in an exception's text included)."""

    def __init__(self, fmt: str = TEXT_FORMAT, mask: Mask = _unmasked, **kwargs: Any) -> None:
        super().__init__(fmt, **kwargs)
        self.mask = mask

    def format(self, record: logging.LogRecord) -> str:
        return self.mask(super().format(record))


def formatter(log_format: str, mask: Mask) -> logging.Formatter:
    return JsonFormatter(mask) if log_format == "json" else MaskingTextFormatter(TEXT_FORMAT, mask)


def setup(level: str, log_format: str, mask: Mask) -> None:
    """The root logger's one handler, in the chosen format."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format, mask))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
