"""The `vouchsafe` command."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from services import database
from services.errors import DomainError
from settings import Settings, SettingsError, load_settings


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Tortoise announces every connection close at INFO; commands print their own results.
    logging.getLogger("tortoise").setLevel(max(logging.WARNING, logging.getLogger().level))


def _with_db(settings: Settings, work: Callable[[], Awaitable[Any]]) -> Any:
    """Run one piece of async work with the database open (migrated first when embedded)."""

    async def run() -> Any:
        if settings.uses_sqlite:
            await database.migrate(settings.database_url)
        await database.open_db(settings.database_url, pool_size=2)
        try:
            return await work()
        finally:
            await database.close_db()

    return asyncio.run(run())


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from server import create_app

    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=settings.log_level.lower())
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from workers.worker import standalone_worker

    if settings.redis_url is None:
        print(
            "vouchsafe: `worker` needs REDIS_URL (the embedded default runs its worker inside `serve`).",
            file=sys.stderr,
        )
        return 2
    standalone_worker(settings).run()
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    asyncio.run(database.migrate(settings.database_url))
    print("migrated")
    return 0


def cmd_export_schema(settings: Settings | None, args: argparse.Namespace) -> int:
    from schema import schema

    text = schema.as_str() + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    return 0


def cmd_staff_create(settings: Settings, args: argparse.Namespace) -> int:
    from services import staff

    password = args.password or getpass.getpass("Password for the staff user: ")
    user = _with_db(settings, lambda: staff.create_staff(email=args.email, password=password))
    print(f"staff user {user.email} created (id {user.id})")
    return 0


def cmd_partner(settings: Settings, args: argparse.Namespace) -> int:
    from services import staff

    async def work() -> Any:
        account = await staff.find_account(args.account)
        return await staff.set_partner(account_id=account.id, enabled=args.action == "enable")

    account = _with_db(settings, work)
    state = "enabled" if account.is_partner else "disabled"
    print(f"voucher feature {state} for account {account.id} ({account.name})")
    return 0


def cmd_outbox(settings: Settings, args: argparse.Namespace) -> int:
    from services import outbox

    if args.action == "failed":
        rows = _with_db(settings, outbox.failed_messages)
        for row in rows:
            print(f"{row.id}\t{row.task}\tattempts={row.attempts}\t{row.created_at:%Y-%m-%d %H:%M}\t{row.last_error}")
        print(f"{len(rows)} failed")
    else:
        row = _with_db(settings, lambda: outbox.retry_failed(args.id))
        print(f"outbox message {row.id} queued again")
    return 0


def cmd_ledger_verify(settings: Settings, args: argparse.Namespace) -> int:
    from services import ledger

    mismatches = _with_db(settings, ledger.verify)
    for m in mismatches:
        print(
            f"account {m.account_id}: balance {m.balance} != ledger sum {m.ledger_sum}"
            f" (last balance_after {m.last_balance_after})"
        )
    print(
        "ledger ok: every balance equals the sum of its ledger" if not mismatches else f"{len(mismatches)} mismatches"
    )
    return 0 if not mismatches else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vouchsafe", description="Partner finance backend: balances, voucher codes.")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API (with the in-process worker when REDIS_URL is unset)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("worker", help="run an arq worker (needs REDIS_URL)").set_defaults(func=cmd_worker)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)

    export = sub.add_parser("export-schema", help="write the GraphQL SDL")
    export.add_argument("--output", default="schema.graphql")
    export.set_defaults(func=cmd_export_schema, no_settings=True)

    staff = sub.add_parser("staff", help="operator staff").add_subparsers(dest="action", required=True)
    create = staff.add_parser("create", help="create a staff user")
    create.add_argument("email")
    create.add_argument("--password", help="prompted for when omitted")
    create.set_defaults(func=cmd_staff_create)

    partner = sub.add_parser("partner", help="enable or disable the voucher feature for an account")
    partner.add_argument("action", choices=["enable", "disable"])
    partner.add_argument("account", help="an account id, or the e-mail of one of its users")
    partner.set_defaults(func=cmd_partner)

    ledger = sub.add_parser("ledger", help="the balance ledger").add_subparsers(dest="action", required=True)
    ledger.add_parser("verify", help="check balance == sum of the ledger for every account").set_defaults(
        func=cmd_ledger_verify
    )

    box = sub.add_parser("outbox", help="failed background work").add_subparsers(dest="action", required=True)
    box.add_parser("failed", help="list failed outbox messages").set_defaults(func=cmd_outbox)
    retry = box.add_parser("retry", help="queue a failed outbox message again")
    retry.add_argument("id", type=int)
    retry.set_defaults(func=cmd_outbox)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "no_settings", False):
        return int(args.func(None, args))
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"vouchsafe: {exc}", file=sys.stderr)
        return 2
    _setup_logging(settings)
    try:
        return int(args.func(settings, args))
    except DomainError as exc:
        print(f"vouchsafe: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
