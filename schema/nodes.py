"""`node(id:)` and `nodes(ids:)`: any object by its global id; what is not one of ours reads as null.

Strawberry's relay.node() answers a malformed id (bad base64, an unknown type name) with a
GraphQL error, and hands a number beyond the keys' range to the database. Here every id
that names nothing of this tenant, for whatever reason, is null, as a missing row is. A token
that stands for nobody (signed out, expired) is told so, as every other field tells it: its
client must not read null as "this order is gone".
"""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated

import strawberry
from strawberry import relay

from schema.accounts import Account, ApiKey, User
from schema.common import parse_global_id
from schema.context import Info
from schema.errors import ClientError
from schema.finance.types import LedgerEntry
from schema.orders.types import Voucher, VoucherOrder
from schema.pagination import MAX_PAGE_SIZE
from schema.permissions import refuse_a_dead_token
from schema.redemption import CertificateRequest
from schema.webhooks import WebhookDelivery, WebhookEndpoint

NODE_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        Account,
        ApiKey,
        User,
        LedgerEntry,
        Voucher,
        VoucherOrder,
        CertificateRequest,
        WebhookEndpoint,
        WebhookDelivery,
    )
}


async def resolve(info: Info, ids: list[str]) -> list[relay.Node | None]:
    """The objects in the order of the ids; one query per type asked for."""
    refuse_a_dead_token(info)
    wanted: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for position, global_id in enumerate(ids):
        parsed = parse_global_id(global_id)
        if parsed is not None and parsed[0] in NODE_TYPES:
            wanted[parsed[0]].append((position, parsed[1]))
    found: list[relay.Node | None] = [None] * len(ids)
    for type_name, entries in wanted.items():
        rows = await NODE_TYPES[type_name].resolve_nodes(  # type: ignore[attr-defined]
            info=info, node_ids=[node_id for _, node_id in entries], required=False
        )
        for (position, _), row in zip(entries, rows, strict=True):
            found[position] = row
    return found


@strawberry.type
class NodeQuery:
    @strawberry.field(description="Any object by its global id; another tenant's reads as null.")
    async def node(
        self, info: Info, id: Annotated[strawberry.ID, strawberry.argument(description="The ID of the object.")]
    ) -> relay.Node | None:
        [found] = await resolve(info, [id])
        return found

    @strawberry.field(description="Objects by global ids, in order; null where not found.")
    async def nodes(
        self,
        info: Info,
        ids: Annotated[list[strawberry.ID], strawberry.argument(description="The IDs of the objects.")],
    ) -> list[relay.Node | None]:
        if len(ids) > MAX_PAGE_SIZE:
            raise ClientError(f"At most {MAX_PAGE_SIZE} ids at once.")
        return await resolve(info, list(ids))
