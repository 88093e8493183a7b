"""Boundary checks for user text: every field has a limit, and no control or bidi characters."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from services.errors import DomainError, InvalidFields, invalid

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"^[^@\s]{{1,64}}@{_LABEL}(?:\.{_LABEL})+$")
# Bidi overrides and isolates can make a name display as something else (Trojan Source).
_BIDI = {"\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f"}

LOCALES = ("en", "de", "fr")
PASSWORD_MIN = 10
PASSWORD_MAX = 200
EMAIL_MAX = 254
LOCALE_MAX = 10


def all_valid(*checks: Callable[[], str]) -> list[str]:
    """Each check's cleaned value; when any fails, InvalidFields with every failure, in order."""
    values, failures = [], []
    for check in checks:
        try:
            values.append(check())
        except DomainError as error:
            failures.append(error)
    if failures:
        raise failures[0] if len(failures) == 1 else InvalidFields(failures)
    return values


def check_length(value: str, *, field: str, max_length: int) -> str:
    """The value, or INVALID on the field when it is longer than the field takes."""
    if len(value) > max_length:
        raise invalid(field, f"At most {max_length} characters.")
    return value


def clean_text(value: str, *, field: str, max_length: int, multiline: bool = False, required: bool = True) -> str:
    """The trimmed text, or INVALID on the field when it is empty, too long or holds control characters."""
    text = value.strip()
    if required and not text:
        raise invalid(field, "This field is required.")
    if len(text) > max_length:
        raise invalid(field, f"At most {max_length} characters.")
    for ch in text:
        if ch in _BIDI or (unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") and not (multiline and ch in "\n\t")):
            raise invalid(field, "Control and bidirectional formatting characters are not allowed.")
    return text


def optional_text(value: str | None, *, field: str, max_length: int, multiline: bool = False) -> str | None:
    if value is None:
        return None
    text = clean_text(value, field=field, max_length=max_length, multiline=multiline, required=False)
    return text or None


def clean_email(value: str, *, field: str = "email") -> str:
    email = clean_text(value, field=field, max_length=EMAIL_MAX).lower()
    if not _EMAIL.match(email):
        raise invalid(field, "Enter a valid e-mail address.")
    return email


def check_password(value: str, *, field: str = "password") -> str:
    if len(value) < PASSWORD_MIN:
        raise invalid(field, f"At least {PASSWORD_MIN} characters.")
    if len(value) > PASSWORD_MAX:
        raise invalid(field, f"At most {PASSWORD_MAX} characters.")
    if "\x00" in value:
        raise invalid(field, "NUL characters are not allowed.")
    return value


def clean_locale(value: str | None, *, field: str = "locale") -> str:
    if value is None:
        return "en"
    locale = check_length(value, field=field, max_length=LOCALE_MAX).strip().lower()
    if locale not in LOCALES:
        raise invalid(field, "Choose one of: " + ", ".join(LOCALES) + ".")
    return locale
