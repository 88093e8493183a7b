"""GraphQL operations counted and timed by name, type and outcome.

Operation names are the client's words, so they are bounded: only a document that
parsed and validated against the schema lends its name, unnamed ones count as
`anonymous`, those that did not validate as `invalid`, and past MAX_NAMES distinct
names every new one counts as `other`. The outcome is `ok`, `user_error` (a payload's
`errors`, with its code), `client_error` (the request's own mistake, a refusal) or
`internal_error` (masked, with its request id; the log has the rest).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from graphql import FieldNode, OperationDefinitionNode

from infra import logs, metrics, tracing
from schema.errors import MaskInternalErrors

OPERATIONS = metrics.counter(
    "vouchsafe_graphql_operations_total",
    "GraphQL operations by name, type and outcome (ok, user_error with its code, client_error, internal_error).",
    ["operation", "type", "outcome", "code"],
)
DURATION = metrics.histogram(
    "vouchsafe_graphql_operation_duration_seconds", "GraphQL operation latency by name and type.", ["operation", "type"]
)
# By what was asked rather than what the client called it: `voucherRedeem` whatever the operation's name.
FIELD_DURATION = metrics.histogram(
    "vouchsafe_graphql_root_field_duration_seconds",
    "GraphQL operation latency by its root field (`multiple` when it asks for several) and type.",
    ["field", "type"],
)
MAX_NAMES = 200
ANONYMOUS, INVALID, OTHER = "anonymous", "invalid", "other"
_names: set[str] = set()
_counted: dict[tuple[str, str, str, str], Any] = {}
_timed: dict[tuple[str, str], Any] = {}
_by_field: dict[tuple[str, str], Any] = {}


def bounded_name(name: str | None, valid: bool) -> str:
    if not valid:
        return INVALID
    if not name:
        return ANONYMOUS
    if name in _names:
        return name
    if len(_names) >= MAX_NAMES:
        return OTHER
    _names.add(name)
    return name


def outcome_of(result: Any, pre_execution_errors: Any) -> tuple[str, str]:
    """(outcome, code): the first error decides; a payload's user errors only when nothing else failed."""
    errors = getattr(result, "errors", None) or pre_execution_errors  # the result's are masked already
    if errors:
        if any((error.extensions or {}).get("code") == "INTERNAL_SERVER_ERROR" for error in errors):
            return "internal_error", ""
        return "client_error", ""
    data = getattr(result, "data", None)
    if isinstance(data, dict):
        for payload in data.values():
            user_errors = payload.get("errors") if isinstance(payload, dict) else None
            if user_errors and isinstance(user_errors, list) and isinstance(user_errors[0], dict):
                return "user_error", str(user_errors[0].get("code") or "")
    return "ok", ""


def root_field(document: Any, operation_name: str | None) -> str:
    """The one root field the chosen operation asks for (names from a validated document: the schema's)."""
    chosen = [
        d
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode)
        and (operation_name is None or (d.name and d.name.value == operation_name))
    ]
    if len(chosen) != 1:
        return "unknown"
    selections = chosen[0].selection_set.selections
    if len(selections) == 1 and isinstance(selections[0], FieldNode):
        return selections[0].name.value
    return "multiple"


def record_field(field: str, kind: str, seconds: float) -> None:
    timed = _by_field.get((field, kind))
    if timed is None:
        timed = _by_field[(field, kind)] = FIELD_DURATION.labels(field, kind)
    timed.observe(seconds)


def record(operation: str, kind: str, outcome: str, code: str, seconds: float) -> None:
    key = (operation, kind, outcome, code)
    counted = _counted.get(key)
    if counted is None:
        counted = _counted[key] = OPERATIONS.labels(*key)
    counted.inc()
    timed = _timed.get((operation, kind))
    if timed is None:
        timed = _timed[(operation, kind)] = DURATION.labels(operation, kind)
    timed.observe(seconds)


class ObservedMaskErrors(MaskInternalErrors):
    """Internal errors masked, then the operation counted and timed: one extension, since each costs every request.

    Its end sees the result as sent to the client (internal errors already masked).
    """

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        logs.OPERATION.set(self.execution_context.operation_name)  # for what is logged meanwhile
        traced = tracing.span("graphql operation") if tracing.enabled else None
        current = traced.__enter__() if traced is not None else None
        try:
            yield from super().on_operation()
        finally:
            self._record(started, current)
            if traced is not None:
                traced.__exit__(None, None, None)

    def _record(self, started: float, current: Any) -> None:
        ec = self.execution_context
        # Strawberry lists execution errors there too; those of a document that did not
        # validate (or whose variables did not) are the ones without a path.
        errors = getattr(ec.result, "errors", None) or ec.pre_execution_errors or ()
        valid = ec.graphql_document is not None and all(error.path for error in errors)
        try:
            kind = ec.operation_type.value if valid else "unknown"
        except Exception:  # an operation name the document does not have
            kind, valid = "unknown", False
        name = bounded_name(ec.operation_name, valid)
        logs.OPERATION.set(name)
        outcome, code = outcome_of(ec.result, ec.pre_execution_errors)
        seconds = time.perf_counter() - started
        record(name, kind, outcome, code, seconds)
        if valid:
            record_field(root_field(ec.graphql_document, ec.operation_name), kind, seconds)
        if current is not None:
            tracing.rename(current, f"{kind} {name}", {"graphql.operation.name": name, "graphql.outcome": outcome})
