"""The writes to Redis that follow a mutation's commits, sent in one round trip when it ends.

A mutation's services make small best-effort writes after they commit (rate-limit
forgiving, change events); the response cache bumps the caller's cached answers. Inside
the batch this extension opens (infra.redis_batch) they are queued and sent together,
after the operation's last commit and before its answer leaves. It is its own mechanism:
the response cache is one of its users, not its owner.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from infra import redis_batch
from schema.context import Context


class AfterCommitWrites(SchemaExtension):
    """Listed before the extensions whose writes it gathers (ResponseCache): it encloses them."""

    async def on_execute(self) -> AsyncIterator[None]:
        context = self.execution_context.context
        if self.execution_context.operation_type != OperationType.MUTATION or not isinstance(context, Context):
            yield
            return
        async with redis_batch.batch(context.resources.redis):
            yield
