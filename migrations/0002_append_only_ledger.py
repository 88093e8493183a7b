"""Database-level guarantees Tortoise cannot express on both stores.

- The ledger is append-only: a trigger refuses UPDATE and DELETE.
- At most one live certificate request per voucher: a partial unique index (I3).
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

POSTGRES_UP = """
CREATE OR REPLACE FUNCTION ledger_entry_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ledger_entry is append-only: % refused', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER ledger_entry_append_only
    BEFORE UPDATE OR DELETE ON ledger_entry
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_refuse_change();
CREATE TRIGGER ledger_entry_no_truncate
    BEFORE TRUNCATE ON ledger_entry
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entry_refuse_change();
"""

POSTGRES_DOWN = """
DROP TRIGGER IF EXISTS ledger_entry_no_truncate ON ledger_entry;
DROP TRIGGER IF EXISTS ledger_entry_append_only ON ledger_entry;
DROP FUNCTION IF EXISTS ledger_entry_refuse_change();
"""

SQLITE_UP = """
CREATE TRIGGER ledger_entry_no_update BEFORE UPDATE ON ledger_entry
BEGIN SELECT RAISE(ABORT, 'ledger_entry is append-only: UPDATE refused'); END;
CREATE TRIGGER ledger_entry_no_delete BEFORE DELETE ON ledger_entry
BEGIN SELECT RAISE(ABORT, 'ledger_entry is append-only: DELETE refused'); END;
"""

SQLITE_DOWN = """
DROP TRIGGER IF EXISTS ledger_entry_no_update;
DROP TRIGGER IF EXISTS ledger_entry_no_delete;
"""

PARTIAL_INDEX_UP = """
CREATE UNIQUE INDEX certificate_request_one_live_per_voucher
    ON certificate_request (voucher_id) WHERE status IN ('SUBMITTED', 'ISSUED');
"""

PARTIAL_INDEX_DOWN = "DROP INDEX IF EXISTS certificate_request_one_live_per_voucher;"


def _is_postgres(schema_editor) -> bool:  # type: ignore[no-untyped-def]
    return schema_editor.client.capabilities.dialect == "postgres"


async def forward(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    await schema_editor.client.execute_script(POSTGRES_UP if _is_postgres(schema_editor) else SQLITE_UP)
    await schema_editor.client.execute_script(PARTIAL_INDEX_UP)


async def backward(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    await schema_editor.client.execute_script(PARTIAL_INDEX_DOWN)
    await schema_editor.client.execute_script(POSTGRES_DOWN if _is_postgres(schema_editor) else SQLITE_DOWN)


class Migration(migrations.Migration):
    dependencies = [("vouchsafe", "0001_initial")]
    initial = False

    operations = [ops.RunPython(forward, backward)]
