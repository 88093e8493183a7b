"""The voucher PDF: the render in progress, its chunks, and the finished file in parts."""

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("vouchsafe", "0003_default_catalogue")]

    initial = False

    operations = [
        ops.CreateModel(
            name="PdfChunk",
            fields=[
                ("id", fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "order",
                    fields.ForeignKeyField(
                        "vouchsafe.VoucherOrder",
                        source_field="order_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="pdf_chunks",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("generation", fields.IntField()),
                ("chunk", fields.IntField()),
                ("pages", fields.IntField()),
                ("data", fields.BinaryField()),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "pdf_chunk",
                "app": "vouchsafe",
                "unique_together": (("order", "chunk"),),
                "pk_attr": "id",
                "table_description": "One rendered chunk of an order's vouchers, a PDF of its own, until assembly.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="PdfPart",
            fields=[
                ("id", fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "order",
                    fields.ForeignKeyField(
                        "vouchsafe.VoucherOrder",
                        source_field="order_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="pdf_parts",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("part", fields.IntField()),
                ("data", fields.BinaryField()),
            ],
            options={
                "table": "pdf_part",
                "app": "vouchsafe",
                "unique_together": (("order", "part"),),
                "pk_attr": "id",
                "table_description": "A slice of the finished PDF (at most 1 MiB), in order.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="PdfRender",
            fields=[
                (
                    "order",
                    fields.OneToOneField(
                        "vouchsafe.VoucherOrder",
                        source_field="order_id",
                        primary_key=True,
                        db_index=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="pdf_render",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("generation", fields.IntField()),
                ("chunk_count", fields.IntField()),
                ("started_by_message_id", fields.BigIntField(null=True)),
                ("updated_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "pdf_render",
                "app": "vouchsafe",
                "pk_attr": "order_id",
                "table_description": "The current render of an order's PDF, whose generation a restart bumps.",
            },
            bases=["Model"],
        ),
    ]
