"""OpenTelemetry traces, only when asked for (OTEL_EXPORTER_OTLP_ENDPOINT set).

Unset, nothing of OpenTelemetry is imported and every helper here is one flag check:
`span()` returns a shared no-op context manager. Set, `setup()` installs a tracer
provider exporting over OTLP/HTTP (the SDK reads the OTEL_* variables itself) and
wraps the database clients' statement methods, so every SQL statement is a span.

A request's trace reaches the job it caused through the outbox row: the row keeps
the W3C `traceparent` of the span that wrote it, and the job's span is linked to it.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from typing import Any

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
SQL_METHODS = ("execute_query", "execute_query_dict", "execute_insert", "execute_many", "execute_script")

enabled = False
_tracer: Any = None
_NOTHING = contextlib.nullcontext()
_WRAPPERS: set[Callable[..., Any]] = set()  # what setup() wrapped, so a second setup wraps nothing twice


def wanted() -> bool:
    return bool(os.environ.get(ENDPOINT_ENV))


def setup(service_name: str, *, exporter: Any = None) -> None:
    """Trace this process: to OTLP/HTTP, or to `exporter` (tests: the SDK's InMemorySpanExporter)."""
    global enabled, _tracer
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _tracer = provider.get_tracer("vouchsafe")
    _instrument_sql()
    enabled = True


def disable() -> None:
    """Stop tracing (tests); the SQL wrappers stay, idle."""
    global enabled
    enabled = False


def span(
    name: str, *, kind: str = "internal", links: tuple[str | None, ...] = (), attributes: dict[str, Any] | None = None
) -> Any:
    """A span around a block (the current one is its parent); `links`: traceparents it follows from."""
    if not enabled:
        return _NOTHING
    return _start(name, kind, links, attributes or {})


@contextlib.contextmanager
def _start(name: str, kind: str, links: tuple[str | None, ...], attributes: dict[str, Any]) -> Iterator[Any]:
    from opentelemetry.trace import Link, SpanKind

    span_links = [Link(context) for context in map(_span_context, links) if context is not None]
    with _tracer.start_as_current_span(
        name, kind=SpanKind[kind.upper()], links=span_links, attributes=attributes
    ) as current:
        yield current


def server_span(name: str, traceparent: str | None, attributes: dict[str, Any]) -> Any:
    """A request's span, the child of the caller's trace when its traceparent header is given."""
    if not enabled:
        return _NOTHING
    return _server(name, traceparent, attributes)


@contextlib.contextmanager
def _server(name: str, traceparent: str | None, attributes: dict[str, Any]) -> Iterator[Any]:
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parent = TraceContextTextMapPropagator().extract({"traceparent": traceparent}) if traceparent else None
    with _tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes) as current:
        yield current


def rename(current: Any, name: str, attributes: dict[str, Any]) -> None:
    if current is not None:
        current.update_name(name)
        current.set_attributes(attributes)


def traceparent() -> str | None:
    """The current span's W3C traceparent, to be stored beside work done later (None when not tracing)."""
    if not enabled:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


def _span_context(value: str | None) -> Any:
    if not value:
        return None
    from opentelemetry.trace import get_current_span
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    context = get_current_span(TraceContextTextMapPropagator().extract({"traceparent": value})).get_span_context()
    return context if context.is_valid else None


def _instrument_sql() -> None:
    """Every statement of the PostgreSQL and SQLite clients as a span (the statement's text, never its values)."""
    from tortoise.backends.asyncpg import client as postgres
    from tortoise.backends.sqlite import client as sqlite

    classes = {
        "postgresql": (postgres.AsyncpgDBClient, postgres.TransactionWrapper),
        "sqlite": (sqlite.SqliteClient, sqlite.SqliteTransactionWrapper),
    }
    for system, owners in classes.items():
        for cls in owners:
            for method in SQL_METHODS:
                original = cls.__dict__.get(method)  # only what the class itself defines: wrapped once
                if original is not None and original not in _WRAPPERS:
                    wrapper = _traced_sql(original, system)
                    _WRAPPERS.add(wrapper)
                    setattr(cls, method, wrapper)


def _traced_sql(original: Callable[..., Any], system: str) -> Callable[..., Any]:
    @functools.wraps(original)
    async def traced(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        if not enabled:
            return await original(self, query, *args, **kwargs)
        statement = query if isinstance(query, str) else str(query)
        name = statement.split(None, 1)[0].upper() if statement else "SQL"
        with span(name, kind="client", attributes={"db.system": system, "db.statement": statement[:2000]}):
            return await original(self, query, *args, **kwargs)

    return traced
