"""Seal the vouchers PDFs stored in clear (chunks and parts), as services.pdf_seal stores them now.

A data step: each row is read, sealed under VOUCHSAFE_CODE_KEY (read from the
environment, as `vouchsafe migrate` and `serve` have it) and written back, one row in
memory at a time. A row that already opens under its own position is left as it is, so
a second run changes nothing; a database without stored PDFs needs no key at all.
"""

from tortoise import connections, migrations
from tortoise.migrations import operations as ops

from services import pdf_seal
from services.codes import CodeCipher

TABLES = {"pdf_chunk": ("chunk", pdf_seal.chunk_aad), "pdf_part": ("part", pdf_seal.part_aad)}


def _cipher() -> CodeCipher:
    from settings import load_settings

    return CodeCipher(load_settings().code_key)


async def forward(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    # The transaction the migration runs in, not the pool's client (on PostgreSQL another connection).
    conn = connections.get(schema_editor.client.connection_name)
    mark = "$1" if conn.capabilities.dialect == "postgres" else "?"
    second = "$2" if conn.capabilities.dialect == "postgres" else "?"
    cipher: CodeCipher | None = None
    if conn.capabilities.dialect == "sqlite":
        # The clear pages an UPDATE frees are zeroed, not left in the file's free list.
        await conn.execute_script("PRAGMA secure_delete = ON")
    for table, (position, aad) in TABLES.items():
        _, rows = await conn.execute_query(f"SELECT id, order_id, {position} FROM {table} ORDER BY id")
        for row in rows:
            _, data = await conn.execute_query(f"SELECT data FROM {table} WHERE id = {mark}", [row["id"]])
            blob = bytes(data[0]["data"])
            cipher = cipher or _cipher()
            bound_to = aad(int(row["order_id"]), int(row[position]))
            if pdf_seal.is_sealed(cipher, bound_to, blob):
                continue
            sealed = cipher.seal_document(blob, bound_to)
            await conn.execute_query(f"UPDATE {table} SET data = {mark} WHERE id = {second}", [sealed, row["id"]])


class Migration(migrations.Migration):
    dependencies = [("vouchsafe", "0008_webhooks")]
    initial = False

    # Irreversible on purpose: a backward step would write every code back in clear.
    operations = [ops.RunPython(forward)]
