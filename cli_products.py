"""The `vouchsafe product` commands: the certificate catalogue, edited by staff."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from settings import Settings

# cli's `_with_db`: runs one piece of async work with the database open.
WithDb = Callable[[Settings, Callable[[], Awaitable[Any]]], Any]


PRODUCT_COLUMNS = (
    "code",
    "name",
    "years",
    "fqdns incl/max",
    "max wildcards",
    "base/yr",
    "fqdn/yr",
    "wildcard/yr",
    "currency",
    "active",
)


def _product_row(product: Any) -> tuple[str, ...]:
    from services.money import to_decimal

    def price(minor: int) -> str:
        return str(to_decimal(minor, product.currency))

    return (
        product.code,
        product.name,
        ",".join(str(y) for y in product.validity_years),
        f"{product.included_fqdns}/{product.max_fqdns}",
        str(product.max_wildcards),
        price(product.price_base_per_year),
        price(product.price_fqdn_per_year),
        price(product.price_wildcard_per_year),
        product.currency,
        "yes" if product.active else "no",
    )


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def cmd_product_list(with_db: WithDb, settings: Settings, args: argparse.Namespace) -> int:
    from services import catalogue

    products = with_db(settings, lambda: catalogue.products(include_inactive=True))
    _print_table(PRODUCT_COLUMNS, [_product_row(p) for p in products])
    return 0


# Catalogue prices are entered in USD, the currency every product is sold in.
PRICE_CURRENCY = "USD"


def cmd_product_set(with_db: WithDb, settings: Settings, args: argparse.Namespace) -> int:
    from tortoise.exceptions import IntegrityError

    from services import catalogue
    from services.money import to_minor

    def minor(value: str | None, field: str) -> int | None:
        return None if value is None else to_minor(value, PRICE_CURRENCY, field=field)

    changes = {
        "name": args.name,
        "validity_years": args.validities,
        "max_fqdns": args.max_fqdns,
        "max_wildcards": args.max_wildcards,
        "price_base_per_year": minor(args.base, "base"),
        "price_fqdn_per_year": minor(args.fqdn_price, "fqdn_price"),
        "price_wildcard_per_year": minor(args.wildcard_price, "wildcard_price"),
        "active": args.active,
    }
    try:
        product = with_db(settings, lambda: catalogue.update_product(code=args.code, **changes))
    except IntegrityError as exc:
        # A rule the service does not check yet, kept by a CHECK constraint of the product table.
        print(f"vouchsafe: the catalogue refused this change ({exc})", file=sys.stderr)
        return 1
    print(f"product {product.code} updated")
    _print_table(PRODUCT_COLUMNS, [_product_row(product)])
    return 0


def _validities(text: str) -> list[int]:
    try:
        years = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError("years as a comma-separated list, e.g. 1,2,3") from exc
    if not years:
        raise argparse.ArgumentTypeError("at least one validity, e.g. 1,2,3")
    return years


def whole_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError("a whole number") from exc
    if value < 0:
        raise argparse.ArgumentTypeError("zero or more")
    return value


PRODUCT_HELP = """\
The certificate product catalogue. Staff edit it with these commands:
`product list` shows every product, active or not; `product set CODE ...` changes
only the options given. Prices are per year, as decimals in USD (e.g. 175.00).
Orders already placed keep the prices they were placed at.
"""


def add_parser(sub: Any, with_db: WithDb) -> None:
    """`product list` and `product set`, run with the database `with_db` opens."""
    product = sub.add_parser(
        "product",
        help="the certificate product catalogue (staff edit it here)",
        description=PRODUCT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).add_subparsers(dest="action", required=True)
    product.add_parser("list", help="list every product with its limits and prices").set_defaults(
        func=functools.partial(cmd_product_list, with_db)
    )
    edit = product.add_parser(
        "set",
        help="change a product; only the options given change",
        description=PRODUCT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    edit.add_argument("code", help="the product code, e.g. BASIC_OV")
    edit.add_argument("--name")
    edit.add_argument("--validities", type=_validities, help="years it is sold for, e.g. 1,2,3")
    edit.add_argument("--max-fqdns", type=whole_number)
    edit.add_argument("--max-wildcards", type=whole_number, help="must stay 0 for an EV product")
    edit.add_argument("--base", help="base price per year (includes the included FQDNs), e.g. 175.00")
    edit.add_argument("--fqdn-price", help="price per further FQDN per year, e.g. 75.00")
    edit.add_argument("--wildcard-price", help="price per wildcard per year, e.g. 450.00")
    state = edit.add_mutually_exclusive_group()
    state.add_argument("--active", dest="active", action="store_const", const=True, help="offer it for sale")
    state.add_argument("--inactive", dest="active", action="store_const", const=False, help="withdraw it from sale")
    edit.set_defaults(func=functools.partial(cmd_product_set, with_db), active=None)
