"""The certificate products partners can buy vouchers for."""

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint
from tortoise.models import Model


class Product(Model):
    """A preconfigured certificate product, prices are per year, in minor units."""

    id = fields.BigIntField(primary_key=True)
    code = fields.CharField(max_length=40, unique=True)
    name = fields.CharField(max_length=100)
    validity_years: fields.JSONField[list[int]] = fields.JSONField(default=list)  # e.g. [1, 2, 3]
    included_fqdns = fields.IntField(default=1)
    max_fqdns = fields.IntField(default=1)
    max_wildcards = fields.IntField(default=0)
    currency = fields.CharField(max_length=3, default="USD")
    price_base_per_year = fields.BigIntField()
    price_fqdn_per_year = fields.BigIntField(default=0)
    price_wildcard_per_year = fields.BigIntField(default=0)
    is_ev = fields.BooleanField(default=False)
    active = fields.BooleanField(default=True)
    position = fields.IntField(default=0)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "product"
        constraints = [
            CheckConstraint(
                check="price_base_per_year >= 0 AND price_fqdn_per_year >= 0 AND price_wildcard_per_year >= 0",
                name="product_prices_non_negative",
            ),
            CheckConstraint(check="NOT is_ev OR max_wildcards = 0", name="product_ev_no_wildcards"),
            CheckConstraint(check="included_fqdns >= 1 AND max_fqdns >= included_fqdns", name="product_fqdns"),
        ]
