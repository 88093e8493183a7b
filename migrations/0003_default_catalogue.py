"""The default catalogue: four preconfigured products (staff edit them with `vouchsafe product`)."""

from tortoise import migrations
from tortoise.migrations import operations as ops

# code, name, validities, included FQDNs, max FQDNs, max wildcards, base, per FQDN, per wildcard (USD cents a year), EV
PRODUCTS = [
    ("BASIC_OV", "Basic OV", "[1,2,3]", 1, 250, 100, 17500, 7500, 45000, False, 10),
    ("BASIC_EV", "Basic EV", "[1,2]", 1, 250, 0, 29500, 15000, 0, True, 20),
    ("SECURE_SITE_OV", "Secure Site OV", "[1,2,3]", 1, 250, 100, 39900, 19900, 99900, False, 30),
    ("SECURE_SITE_EV", "Secure Site EV", "[1,2]", 1, 250, 0, 99500, 49500, 0, True, 40),
]


def _insert(row: tuple) -> str:  # type: ignore[type-arg]
    code, name, validities, included, max_fqdns, max_wildcards, base, fqdn, wildcard, ev, position = row
    return (
        "INSERT INTO product (code, name, validity_years, included_fqdns, max_fqdns, max_wildcards, currency,"
        " price_base_per_year, price_fqdn_per_year, price_wildcard_per_year, is_ev, active, position, updated_at)"
        f" SELECT '{code}', '{name}', '{validities}', {included}, {max_fqdns}, {max_wildcards}, 'USD',"
        f" {base}, {fqdn}, {wildcard}, {'TRUE' if ev else 'FALSE'}, TRUE, {position}, CURRENT_TIMESTAMP"
        f" WHERE NOT EXISTS (SELECT 1 FROM product WHERE code = '{code}');"
    )


async def forward(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    await schema_editor.client.execute_script("\n".join(_insert(row) for row in PRODUCTS))


async def backward(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    codes = ", ".join(f"'{row[0]}'" for row in PRODUCTS)
    await schema_editor.client.execute_script(f"DELETE FROM product WHERE code IN ({codes});")


class Migration(migrations.Migration):
    dependencies = [("vouchsafe", "0002_append_only_ledger")]
    initial = False

    operations = [ops.RunPython(forward, backward)]
