"""Subscriptions: an order or the account, streamed as it changes (graphql-transport-ws).

Each stream first sends the current state, then the state after each change the
services announce (services.events), read anew from the database within the
subscriber's tenant. The first message makes a reconnect safe: a client that was
away gets the present state without a race between its refetch and its subscribe.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeVar

import strawberry

from infra.live import Hub
from models import Account as AccountModel
from models import VoucherOrder as VoucherOrderModel
from schema.accounts import Account
from schema.common import node_pk
from schema.context import Info
from schema.errors import ClientError
from schema.loaders import Loaders
from schema.orders.types import VoucherOrder
from schema.permissions import actor_of
from services.actors import authenticate
from services.events import Topic

T = TypeVar("T")

NOT_FOUND = "Not found."


async def _stream(
    info: Info, topic: Topic, object_id: int, tenant: int, read: Callable[[], Awaitable[T | None]]
) -> AsyncGenerator[T, None]:
    hub: Hub = info.context.resources.hub
    # Subscribed before the first read: a change committed in between wakes the stream again.
    with hub.subscribe(topic, object_id, tenant=tenant) as subscriber:
        current = await read()
        if current is None:
            raise ClientError(NOT_FOUND, code="NOT_FOUND")
        yield current
        while True:
            await subscriber.changed()
            if not await _still_signed_in(info):
                return  # signed out, revoked or disabled since: the stream ends
            # One connection's context serves all its operations: fresh loaders for each state.
            info.context.loaders = Loaders()
            current = await read()
            if current is None:
                return
            yield current


async def _still_signed_in(info: Info) -> bool:
    token = info.context.token
    actor = await authenticate(token) if token else None
    if actor is None or actor.account_id != (info.context.actor.account_id if info.context.actor else None):
        return False
    info.context.actor = actor  # a changed role counts from now on
    return True


@strawberry.type(name="Subscription")
class LiveSubscription:
    @strawberry.subscription(
        description="The order now, then after each change: status, status counts, PDF, history. "
        "Another tenant's order answers NOT_FOUND."
    )
    async def voucher_order_updated(self, info: Info, id: strawberry.ID) -> AsyncGenerator[VoucherOrder, None]:
        actor = actor_of(info)
        if actor.account_id is None:
            raise ClientError(NOT_FOUND, code="NOT_FOUND")
        tenant, pk = actor.account_id, node_pk(id, VoucherOrder)

        async def read() -> VoucherOrder | None:
            order = await VoucherOrderModel.filter(id=pk, account_id=tenant).first()
            return VoucherOrder.of(order) if order else None

        async for order in _stream(info, Topic.ORDER, pk, tenant, read):
            yield order

    @strawberry.subscription(description="The signed-in account now, then after each balance or settings change.")
    async def account_updated(self, info: Info) -> AsyncGenerator[Account, None]:
        actor = actor_of(info)
        if actor.account_id is None:
            raise ClientError("Staff have no account to follow.", code="NOT_FOUND")
        tenant = actor.account_id

        async def read() -> Account | None:
            account = await AccountModel.filter(id=tenant).first()
            return Account.of(account) if account else None

        async for account in _stream(info, Topic.ACCOUNT, tenant, tenant, read):
            yield account
