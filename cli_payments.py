"""The `vouchsafe payments` commands: card payments left between their charge and their commit.

A card request is charged first and committed after (services.card_payments). When its
process died in between, or the database went away under its commit and the client never
retried, its idempotency record stays IN_PROGRESS: the card may have been charged with
nothing to show for it. `unresolved` lists them with the key the charge was sent under;
the operator looks it up at the payment provider, refunds it there if it exists, then
`resolve`s the record (docs/operations.md, "Card payments left unresolved").
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any

from cli_products import WithDb
from settings import Settings


def cmd_unresolved(with_db: WithDb, settings: Settings, args: argparse.Namespace) -> int:
    from services import idempotency

    rows = with_db(settings, idempotency.unresolved)
    for row in rows:
        when = f"{row.created_at:%Y-%m-%d %H:%M}"
        print(f"{row.record_id}\taccount {row.account_id}\t{row.operation}\t{when}\t{row.gateway_key}")
    print(f"{len(rows)} unresolved card payments")
    return 0


def cmd_resolve(with_db: WithDb, settings: Settings, args: argparse.Namespace) -> int:
    from services import idempotency

    if not with_db(settings, lambda: idempotency.resolve(args.id)):
        print(
            f"vouchsafe: {args.id} is not an unresolved card payment (resolved, or a retry is running)", file=sys.stderr
        )
        return 1
    print(f"resolved {args.id}: its idempotency key is free again")
    return 0


def add_parser(sub: Any, with_db: WithDb) -> None:
    """`payments unresolved` and `payments resolve ID`."""
    payments = sub.add_parser("payments", help="card payments left between charge and commit").add_subparsers(
        dest="action", required=True
    )
    payments.add_parser(
        "unresolved", help="list them, with the idempotency key to look the charge up by at the provider"
    ).set_defaults(func=functools.partial(cmd_unresolved, with_db))
    resolve = payments.add_parser("resolve", help="forget one, once refunded (or found uncharged) at the provider")
    resolve.add_argument("id", type=int, help="the record id `unresolved` lists first")
    resolve.set_defaults(func=functools.partial(cmd_resolve, with_db))
