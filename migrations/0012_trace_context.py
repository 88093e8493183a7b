"""The outbox row keeps the traceparent of the request that wrote it (traces link the job to it)."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("vouchsafe", "0010_documents")]

    initial = False

    operations = [
        ops.AddField(
            model_name="OutboxMessage",
            name="trace_context",
            field=fields.CharField(null=True, max_length=64),
        ),
    ]
