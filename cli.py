"""The `vouchsafe` command."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import shlex
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cli_documents
import cli_payments
import cli_products
from infra import database, logs, metrics
from models import ORM_APPS
from services import events
from services.errors import DomainError
from services.events import EventBus
from settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from starlette.applications import Starlette


def _setup_logging(settings: Settings) -> None:
    from web.redeem import mask_secrets

    # Every line masked (codes, tokens, secrets), in the text format or one JSON object a line.
    logs.setup(settings.log_level, settings.log_format, mask_secrets)
    # Tortoise announces every connection close at INFO; commands print their own results.
    logging.getLogger("tortoise").setLevel(max(logging.WARNING, logging.getLogger().level))


# uvicorn's default WebSocket implementation is the websockets library's deprecated legacy API.
WEBSOCKETS = "websockets-sansio"


def _with_db(settings: Settings, work: Callable[[], Awaitable[Any]]) -> Any:
    """Run one piece of async work with the database open (migrated first when embedded)."""
    return _with_events(settings, lambda bus: work(), redis=False)


def _with_events(settings: Settings, work: Callable[[EventBus], Awaitable[Any]], *, redis: bool = True) -> Any:
    """As `_with_db`, the work given the bus its changes are announced on."""

    async def run() -> Any:
        if settings.uses_sqlite:
            await database.migrate(settings.database_url, apps=ORM_APPS)
        await database.open_db(settings.database_url, pool_size=2, apps=ORM_APPS)
        client = None
        bus: EventBus = events.KeptEvents()  # without Redis no server can hear this process
        if redis and settings.redis_url:
            # A change made here (a partner enabled) reaches the running servers' live
            # subscribers and retires their cached answers, as one made through the API does.
            from redis.asyncio import Redis

            from infra.event_bus import RedisEventBus

            client = Redis.from_url(settings.redis_url)
            bus = RedisEventBus(client, settings.queue_name, events.encode)
        try:
            return await work(bus)
        finally:
            if client is not None:
                await client.aclose()
            await database.close_db()

    return asyncio.run(run())


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from server import create_app
    from web import redeem as redeem_page

    if args.workers > 1 and (settings.uses_sqlite or settings.embedded_redis):
        print(
            "vouchsafe: `serve --workers N` needs DATABASE_URL (PostgreSQL) and REDIS_URL: the embedded"
            " SQLite file, Redis stand-in and in-process worker belong to one process. Run one process,"
            " or set both and start `vouchsafe worker` processes for background work.",
            file=sys.stderr,
        )
        return 2
    settings = _served_at(settings, args.host, args.port)
    # The same options for one process and for N: a flag added to one path reaches the other.
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_level": settings.log_level.lower(),
        "access_log": args.access_log,
        "ws": WEBSOCKETS,
        # The WebSocket's frames are capped by the server too, before the handler reads them.
        "ws_max_size": settings.max_body_bytes,
    }
    if settings.log_format == "json":
        # No configuration of uvicorn's own: its loggers reach the root's JSON handler.
        options["log_config"] = None
    if args.workers > 1:
        # Before any process imports prometheus_client: each writes its values there, any one answers /metrics.
        metrics.prepare_multiprocess_dir(settings.data_dir / "prometheus-multiproc")
        # uvicorn's supervisor spawns each process afresh: the factory builds the app there (see serve_app).
        uvicorn.run("cli:serve_app", factory=True, workers=args.workers, **options)
        return 0
    redeem_page.install_access_log_masking()
    uvicorn.run(create_app(settings), **options)
    return 0


def listening_url(host: str, port: int) -> str:
    """The base URL of `serve --host H --port P`, as a browser on this machine reaches it."""
    if host in ("", "0.0.0.0"):  # every IPv4 address: this machine's own is one of them
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _served_at(settings: Settings, host: str, port: int) -> Settings:
    """With VOUCHSAFE_PUBLIC_URL unset, links use the address served; what serves is printed either way."""
    listening = listening_url(host, port)
    if not settings.public_url_set:
        settings = replace(settings, public_url=listening)
        # `--workers N` processes read the environment again (serve_app): they get the same URL.
        os.environ["VOUCHSAFE_PUBLIC_URL"] = listening
    origin = "VOUCHSAFE_PUBLIC_URL" if settings.public_url_set else "the address served; set VOUCHSAFE_PUBLIC_URL"
    lines = [f"GraphQL at {listening}/graphql", f"public URL {settings.public_url} ({origin})"]
    lines.append(f"data dir   {settings.data_dir}")
    if settings.log_format == "json":  # one JSON object a line, from the first line on
        _setup_logging(settings)
        for line in lines:
            logging.getLogger("vouchsafe.serve").info("%s", line)
        return settings
    print(f"vouchsafe: {lines[0]}", flush=True)
    print(f"  {lines[1]}", flush=True)
    print(f"  {lines[2]}", flush=True)  # aligned under "public URL"
    return settings


def serve_app() -> Starlette:
    """The app of one `serve --workers N` process.

    uvicorn spawns these processes (a fresh interpreter each, not a fork), so what the
    parent set up is gone: the settings are read again (the environment and the key
    files the parent already wrote give the same values), and the logging and the
    access-log masking are installed again before the first request is logged.
    """
    from server import create_app
    from web import redeem as redeem_page

    settings = load_settings()
    _setup_logging(settings)
    redeem_page.install_access_log_masking()
    return create_app(settings)


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from workers.worker import standalone_worker

    if settings.redis_url is None:
        print(
            "vouchsafe: `worker` needs REDIS_URL (the embedded default runs its worker inside `serve`).",
            file=sys.stderr,
        )
        return 2
    if not settings.public_url_set:
        # A worker renders the PDFs' links: without the URL it cannot know where `serve` listens.
        print(
            f"vouchsafe: VOUCHSAFE_PUBLIC_URL is unset: PDF and e-mail links point at {settings.public_url};"
            " set it to the address `serve` is reached at.",
            file=sys.stderr,
        )
    standalone_worker(settings).run()
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    asyncio.run(database.migrate(settings.database_url, apps=ORM_APPS))
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

    async def work(bus: EventBus) -> Any:
        account = await staff.find_account(args.account)
        return await staff.set_partner(account_id=account.id, enabled=args.action == "enable", bus=bus)

    account = _with_events(settings, work)
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


# The sign-in `demo` prints: one of the project's own documents (cli_documents collects it).
DEMO_SIGN_IN = "mutation SignIn($input: SignInInput!) { signIn(input: $input) { token errors { code message } } }"


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from services import demo
    from services.codes import CodeCipher
    from services.money import to_decimal
    from services.payments import SandboxGateway

    if settings.production:
        print(
            "vouchsafe: `demo` creates a sample partner; it does not run with VOUCHSAFE_ENV=production.",
            file=sys.stderr,
        )
        return 2
    result = _with_events(
        settings,
        lambda bus: demo.create_demo(
            cipher=CodeCipher(settings.code_key), public_url=settings.public_url, gateway=SandboxGateway(), bus=bus
        ),
    )
    account = result.account
    print(f"demo partner account {account.id} ({account.name}, locale {account.locale})")
    print(f"  e-mail:   {result.email}")
    print(f"  password: {result.password}")
    print(f"  balance:  {to_decimal(account.balance, account.currency)} {account.currency}")
    for order in result.orders:
        total = f"{to_decimal(order.total, order.currency)} {order.currency}"
        vouchers = f"{order.voucher_count} voucher{'' if order.voucher_count == 1 else 's'}"
        print(f"  order {order.number}: {vouchers}, {total}, {order.payment_method.value}")
    sign_in = {
        "query": DEMO_SIGN_IN,
        "variables": {"input": {"email": result.email, "password": result.password}},
    }
    print(f"Sign in with the signIn mutation at {settings.public_url}/graphql (start `vouchsafe serve` first):")
    if not settings.public_url_set:
        print("  (serve's default address: `serve --port N` serves at http://127.0.0.1:N, and its links use that)")
    print(
        f"  curl -s {shlex.quote(settings.public_url + '/graphql')} -H 'Content-Type: application/json'"
        f" -d {shlex.quote(json.dumps(sign_in))}"
    )
    print("then send the token it returns as `Authorization: Bearer <token>`.")
    return 0


def _positive(text: str) -> int:
    value = cli_products.whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError("one or more")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vouchsafe", description="Partner finance backend: balances, voucher codes.")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API (with the in-process worker when REDIS_URL is unset)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="API processes on one port (default 1); more than 1 needs DATABASE_URL and REDIS_URL",
    )
    # A line per request is a share of a redemption's CPU (LogRecord, masking filter, formatter;
    # bench/README.md, W3): worth leaving out when a proxy in front already logs every request.
    serve.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        help="write no line per request (errors and the app's own logs are kept)",
    )
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

    cli_products.add_parser(sub, _with_db)
    cli_documents.add_parser(sub, _with_db)
    cli_payments.add_parser(sub, _with_db)

    sub.add_parser(
        "demo", help="create a demo partner (new e-mail each run) with a balance and three orders"
    ).set_defaults(func=cmd_demo)

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
