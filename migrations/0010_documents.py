"""Trusted documents: the GraphQL operations clients may send by id (and, in allow-list mode, the only ones run)."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("vouchsafe", "0009_sealed_pdfs")]

    initial = False

    operations = [
        ops.CreateModel(
            name="TrustedDocument",
            fields=[
                ("hash", fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                ("text", fields.TextField(unique=False)),
                ("client_id", fields.CharField(null=True, unique=True, max_length=200)),
                ("source", fields.CharField(max_length=200)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "trusted_document",
                "app": "vouchsafe",
                "pk_attr": "hash",
                "table_description": (
                    "One GraphQL document, keyed by the sha256 (lower-case hex) of its exact UTF-8 text."
                ),
            },
            bases=["Model"],
        ),
    ]
