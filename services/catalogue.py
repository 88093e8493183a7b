"""The product catalogue and the pricing of voucher lines.

A line buys `quantity` vouchers, each for one certificate of `validity_years`
covering `fqdns` plain names and `wildcards` wildcard names. A year costs the
base price (which includes the product's `included_fqdns` names), plus each
further FQDN, plus each wildcard; a voucher costs that times its years.
"""

from __future__ import annotations

from dataclasses import dataclass

from models import Product
from services.errors import DomainError, ErrorCode, invalid

MAX_LINES = 20
PRODUCT_CODE_MAX = 40  # the column's length
MAX_QUANTITY = 10_000
MAX_VOUCHERS = 10_000


@dataclass(frozen=True)
class LineRequest:
    product_code: str
    quantity: int
    validity_years: int
    fqdns: int
    wildcards: int


@dataclass(frozen=True)
class PricedLine:
    product: Product
    quantity: int
    validity_years: int
    fqdns: int
    wildcards: int
    unit_price: int
    line_total: int


@dataclass(frozen=True)
class Quote:
    lines: list[PricedLine]
    total: int
    currency: str

    @property
    def voucher_count(self) -> int:
        return sum(line.quantity for line in self.lines)


async def products(*, include_inactive: bool = False) -> list[Product]:
    query = Product.all() if include_inactive else Product.filter(active=True)
    return await query.order_by("position", "id")


def unit_price(product: Product, *, validity_years: int, fqdns: int, wildcards: int) -> int:
    per_year = (
        product.price_base_per_year
        + max(0, fqdns - product.included_fqdns) * product.price_fqdn_per_year
        + wildcards * product.price_wildcard_per_year
    )
    return int(per_year) * validity_years


def _check_line(index: int, line: LineRequest, product: Product | None) -> None:
    def bad(field: str, message: str) -> DomainError:
        return invalid(f"lines.{index}.{field}", message)

    if product is None:
        raise bad("product_code", "No such product.")
    if not 1 <= line.quantity <= MAX_QUANTITY:
        raise bad("quantity", f"From 1 to {MAX_QUANTITY} vouchers a line.")
    if line.validity_years not in product.validity_years:
        allowed = ", ".join(str(y) for y in product.validity_years)
        raise bad("validity_years", f"{product.name} is sold for {allowed} years.")
    if line.fqdns < 0 or line.wildcards < 0 or line.fqdns + line.wildcards < 1:
        raise bad("fqdns", "A certificate covers at least one name.")
    if line.fqdns > product.max_fqdns:
        raise bad("fqdns", f"{product.name} covers at most {product.max_fqdns} FQDNs.")
    if line.wildcards > product.max_wildcards:
        reason = "allows no wildcards" if product.max_wildcards == 0 else f"covers at most {product.max_wildcards}"
        raise bad("wildcards", f"{product.name} {reason}.")


async def quote(lines: list[LineRequest], *, currency: str) -> Quote:
    """Price the lines against the current catalogue; INVALID on the first line that does not fit."""
    if not 1 <= len(lines) <= MAX_LINES:
        raise invalid("lines", f"From 1 to {MAX_LINES} lines.")
    for index, line in enumerate(lines):
        # Upper-casing can lengthen a string ("ß" is "SS"): the normal form is checked too.
        if max(len(line.product_code), len(line.product_code.strip().upper())) > PRODUCT_CODE_MAX:
            raise invalid(f"lines.{index}.product_code", f"At most {PRODUCT_CODE_MAX} characters.")
    codes = {line.product_code.strip().upper() for line in lines}
    found = {p.code: p for p in await Product.filter(code__in=list(codes), active=True)}
    return price_lines(lines, found, currency=currency)


def price_lines(lines: list[LineRequest], products_by_code: dict[str, Product], *, currency: str) -> Quote:
    """The pure pricing of lines against given products."""
    priced = []
    for index, line in enumerate(lines):
        product = products_by_code.get(line.product_code.strip().upper())
        _check_line(index, line, product)
        assert product is not None
        if product.currency != currency:
            raise invalid(f"lines.{index}.product_code", f"{product.name} is not sold in {currency}.")
        unit = unit_price(product, validity_years=line.validity_years, fqdns=line.fqdns, wildcards=line.wildcards)
        priced.append(
            PricedLine(
                product, line.quantity, line.validity_years, line.fqdns, line.wildcards, unit, unit * line.quantity
            )
        )
    result = Quote(lines=priced, total=sum(p.line_total for p in priced), currency=currency)
    if result.voucher_count > MAX_VOUCHERS:
        raise invalid("lines", f"At most {MAX_VOUCHERS} vouchers an order.")
    return result


async def update_product(
    *,
    code: str,
    name: str | None = None,
    validity_years: list[int] | None = None,
    max_fqdns: int | None = None,
    max_wildcards: int | None = None,
    price_base_per_year: int | None = None,
    price_fqdn_per_year: int | None = None,
    price_wildcard_per_year: int | None = None,
    active: bool | None = None,
) -> Product:
    """Staff edit a product (command line). Placed orders keep the prices they were placed at."""
    product = await Product.filter(code=code.strip().upper()).first()
    if product is None:
        raise DomainError(ErrorCode.NOT_FOUND, f"No product {code}.", "code")
    changes = {
        "name": name,
        "validity_years": validity_years,
        "max_fqdns": max_fqdns,
        "max_wildcards": max_wildcards,
        "price_base_per_year": price_base_per_year,
        "price_fqdn_per_year": price_fqdn_per_year,
        "price_wildcard_per_year": price_wildcard_per_year,
        "active": active,
    }
    for field, value in changes.items():
        if value is not None:
            setattr(product, field, value)
    if not product.validity_years or not all(y in (1, 2, 3) for y in product.validity_years):
        raise invalid("validity_years", "Validities are 1, 2 or 3 years, at least one.")
    if product.is_ev and product.max_wildcards:
        raise invalid("max_wildcards", "An EV product allows no wildcards.")
    if product.max_wildcards < 0:
        raise invalid("max_wildcards", "Cannot be negative.")
    if product.max_fqdns < product.included_fqdns:
        raise invalid("max_fqdns", f"At least the {product.included_fqdns} FQDNs the base price includes.")
    for field in ("price_base_per_year", "price_fqdn_per_year", "price_wildcard_per_year"):
        if getattr(product, field) < 0:
            raise invalid(field, "Prices cannot be negative.")
    await product.save()
    return product
