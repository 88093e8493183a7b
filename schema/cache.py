"""The response cache as a schema extension: dashboards that poll get stored answers while nothing changed.

Only read operations whose every root field is in CACHEABLE are cached, for a
tenant's user or API key; never mutations, subscriptions, staff, anonymous callers
or answers with errors. `voucherByCode` is left out on purpose: each lookup must
count against the guessing limit. A mutation by a tenant retires the tenant's
answers whatever it changed (see infra.response_cache for the versioning).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import orjson
from graphql import ExecutionResult, FieldNode, OperationDefinitionNode
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from infra import response_cache
from schema.context import Context

log = logging.getLogger(__name__)

CACHEABLE = frozenset({"viewer", "voucherOrders", "node", "nodes", "certificateRequests"})


class ResponseCache(SchemaExtension):
    async def on_execute(self) -> AsyncIterator[None]:
        ec = self.execution_context
        context = ec.context
        if not isinstance(context, Context):
            yield
            return
        actor, redis, namespace = context.actor, context.resources.redis, context.settings.queue_name
        if ec.operation_type == OperationType.MUTATION:
            # The caller's own answers are retired whatever the mutation changed; the bump joins
            # the mutation's other writes after its commits (schema.after_commit).
            try:
                yield
            finally:
                if actor is not None and actor.account_id is not None:
                    await response_cache.invalidate(redis, namespace, [actor.account_id])
            return
        if actor is None or actor.account_id is None:
            yield
            return
        if ec.operation_type != OperationType.QUERY or not self._cacheable():
            yield
            return
        # The HTTP front (web.graphql.GraphQLOverHTTP) looked this request up already, before the
        # session was read; anything else (a WebSocket, a form post) looks it up here.
        lookup = context.cache_lookup or await response_cache.look_up(
            redis, namespace, actor, [ec.query, ec.variables or {}, ec.operation_name]
        )
        key = lookup.key if lookup else None
        stored = lookup.stored if lookup else None
        if stored is not None:
            ec.result = ExecutionResult(data=orjson.loads(stored), errors=None)
            yield
            return
        yield
        result = ec.result
        if key is None or not isinstance(result, ExecutionResult) or result.errors or result.data is None:
            return
        encoded = orjson.dumps(result.data)
        context.encoded_data = (result.data, encoded)
        try:
            await response_cache.put(redis, key, encoded)
        except Exception as exc:
            log.warning("response cache not stored: %s", exc)

    def _cacheable(self) -> bool:
        document = self.execution_context.graphql_document
        if document is None:
            return False
        name = self.execution_context.operation_name
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        chosen = [o for o in operations if name is None or (o.name is not None and o.name.value == name)]
        if len(chosen) != 1:
            return False
        selections = chosen[0].selection_set.selections
        # A fragment at the root could hide any field: only plain fields, all of them cacheable.
        return all(isinstance(s, FieldNode) and s.name.value in CACHEABLE for s in selections)
