"""Mutations answer a dependency outage in their payload: `errors: [{code: SERVICE_UNAVAILABLE}]`.

Every mutation's payload carries `errors` (UserError), which is where a client already
looks for a refusal and its `retryAfterSeconds`. A Redis or PostgreSQL failure under a
mutation (infra.faults) is answered there rather than as a masked field error; any
other exception still reaches MaskInternalErrors as an internal error. Queries have no
payload: theirs is a field error with the same code (schema.errors).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from inspect import isawaitable
from typing import Any

from graphql import GraphQLField, GraphQLNonNull, GraphQLObjectType, GraphQLSchema

from infra.faults import describe, is_unavailable
from schema.errors import unavailable_user_error

log = logging.getLogger("vouchsafe.graphql")


def _payload_class(field: GraphQLField) -> type | None:
    """The Strawberry class of the field's payload, when it has an `errors` list."""
    kind = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
    if not isinstance(kind, GraphQLObjectType) or "errors" not in kind.fields:
        return None
    definition = (kind.extensions or {}).get("strawberry-definition")
    origin = getattr(definition, "origin", None)
    return origin if isinstance(origin, type) else None


def _guarded(resolve: Callable[..., Any], payload: type, name: str) -> Callable[..., Any]:
    async def resolver(root: Any, info: Any, **arguments: Any) -> Any:
        try:
            result = resolve(root, info, **arguments)
            return await result if isawaitable(result) else result
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            request_id = getattr(info.context, "request_id", "-")
            log.warning("%s unavailable in %s (request %s)", describe(exc), name, request_id)
            return payload(errors=[unavailable_user_error()])

    return resolver


def answer_outages_in_payloads(schema: GraphQLSchema) -> None:
    """Wrap every mutation whose payload has `errors` (done once, when the schema is built)."""
    if schema.mutation_type is None:
        return
    for name, field in schema.mutation_type.fields.items():
        payload = _payload_class(field)
        if payload is not None and field.resolve is not None:
            field.resolve = _guarded(field.resolve, payload, name)
