"""The product catalogue and quotes."""

from __future__ import annotations

import strawberry

from models import Product
from schema.common import Money
from schema.errors import UserError, user_errors
from services import catalogue
from services.catalogue import LineRequest
from services.errors import DomainError


@strawberry.type(description="Prices of one year of a product.")
class ProductPrices:
    base: Money = strawberry.field(description="Includes the product's includedFqdns names.")
    per_additional_fqdn: Money
    per_wildcard: Money


@strawberry.type(description="A preconfigured certificate product vouchers are sold for.")
class CertificateProduct:
    code: str
    name: str
    validity_years: list[int]
    included_fqdns: int
    max_fqdns: int
    max_wildcards: int = strawberry.field(description="0 for EV products: they allow no wildcards.")
    is_ev: bool
    price_per_year: ProductPrices

    @classmethod
    def of(cls, product: Product) -> CertificateProduct:
        currency = product.currency
        return cls(
            code=product.code,
            name=product.name,
            validity_years=list(product.validity_years),
            included_fqdns=product.included_fqdns,
            max_fqdns=product.max_fqdns,
            max_wildcards=product.max_wildcards,
            is_ev=product.is_ev,
            price_per_year=ProductPrices(
                base=Money.of(product.price_base_per_year, currency),
                per_additional_fqdn=Money.of(product.price_fqdn_per_year, currency),
                per_wildcard=Money.of(product.price_wildcard_per_year, currency),
            ),
        )


@strawberry.input(description="Vouchers of one product, each for one certificate.")
class VoucherLineInput:
    product_code: str
    quantity: int
    validity_years: int
    fqdns: int = strawberry.field(description="Plain names a certificate covers (the common name included).")
    wildcards: int

    def request(self) -> LineRequest:
        return LineRequest(self.product_code, self.quantity, self.validity_years, self.fqdns, self.wildcards)


@strawberry.input
class VoucherQuoteInput:
    lines: list[VoucherLineInput]


@strawberry.type
class VoucherQuoteLine:
    product: CertificateProduct
    quantity: int
    validity_years: int
    fqdns: int
    wildcards: int
    unit_price: Money
    line_price: Money


@strawberry.type(description="What lines would cost now; nothing is placed.")
class VoucherQuote:
    lines: list[VoucherQuoteLine] = strawberry.field(default_factory=list)
    total: Money | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CatalogueQuery:
    @strawberry.field(description="The certificate products on sale.")
    async def products(self) -> list[CertificateProduct]:
        return [CertificateProduct.of(p) for p in await catalogue.products()]

    @strawberry.field(description="Price lines without placing anything.")
    async def voucher_quote(self, input: VoucherQuoteInput) -> VoucherQuote:
        try:
            quote = await catalogue.quote([line.request() for line in input.lines], currency="USD")
        except DomainError as error:
            return VoucherQuote(errors=user_errors(error))
        return VoucherQuote(
            lines=[
                VoucherQuoteLine(
                    product=CertificateProduct.of(p.product),
                    quantity=p.quantity,
                    validity_years=p.validity_years,
                    fqdns=p.fqdns,
                    wildcards=p.wildcards,
                    unit_price=Money.of(p.unit_price, quote.currency),
                    line_price=Money.of(p.line_total, quote.currency),
                )
                for p in quote.lines
            ],
            total=Money.of(quote.total, quote.currency),
        )
