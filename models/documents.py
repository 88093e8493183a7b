"""An order's voucher PDF: the render in progress, its rendered chunks, and the finished file in parts."""

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.orders import VoucherOrder


class PdfRender(Model):
    """The current render of an order's PDF, whose generation a restart bumps."""

    # Late work of an older generation (a chunk still rendering) is ignored.

    order_id: int

    order: fields.OneToOneRelation["VoucherOrder"] = fields.OneToOneField(
        "vouchsafe.VoucherOrder", related_name="pdf_render", on_delete=fields.CASCADE, primary_key=True
    )
    generation = fields.IntField()
    chunk_count = fields.IntField()
    # The outbox row that started this generation: its second delivery starts nothing.
    started_by_message_id = fields.BigIntField(null=True)
    updated_at = fields.DatetimeField()

    class Meta:
        table = "pdf_render"


class PdfChunk(Model):
    """One rendered chunk of an order's vouchers, a PDF of its own, until assembly."""

    order_id: int

    id = fields.BigIntField(primary_key=True)
    order: fields.ForeignKeyRelation["VoucherOrder"] = fields.ForeignKeyField(
        "vouchsafe.VoucherOrder", related_name="pdf_chunks", on_delete=fields.CASCADE
    )
    generation = fields.IntField()
    chunk = fields.IntField()
    pages = fields.IntField()
    data = fields.BinaryField()
    created_at = fields.DatetimeField()

    class Meta:
        table = "pdf_chunk"
        unique_together = (("order", "chunk"),)


class PdfPart(Model):
    """A slice of the finished PDF (at most 1 MiB), in order."""

    order_id: int

    id = fields.BigIntField(primary_key=True)
    order: fields.ForeignKeyRelation["VoucherOrder"] = fields.ForeignKeyField(
        "vouchsafe.VoucherOrder", related_name="pdf_parts", on_delete=fields.CASCADE
    )
    part = fields.IntField()
    data = fields.BinaryField()

    class Meta:
        table = "pdf_part"
        unique_together = (("order", "part"),)
