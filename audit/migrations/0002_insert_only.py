"""The database refuses UPDATE and DELETE on the audit tables (S8.6).

PostgreSQL, which CI and production run: a trigger on each row. SQLite (the demo)
has no such guard, because Django's test flush empties tables with DELETE there;
the application's own refusal (audit/chain.py) and the hash chain still hold.
TRUNCATE, which only a database owner runs, is not a row change and is allowed.
"""

from django.db import migrations

TABLES = ("sync_logs", "audit_adminaction")

CREATE = """
CREATE OR REPLACE FUNCTION refuse_audit_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% rows are never changed or deleted', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
""" + "".join(
    f"CREATE TRIGGER {table}_insert_only BEFORE UPDATE OR DELETE ON {table} "
    "FOR EACH ROW EXECUTE FUNCTION refuse_audit_change();\n"
    for table in TABLES
)
DROP = "".join(f"DROP TRIGGER IF EXISTS {table}_insert_only ON {table};\n" for table in TABLES) + (
    "DROP FUNCTION IF EXISTS refuse_audit_change();"
)


def forwards(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)  # its % is PL/pgSQL's, not a placeholder


def backwards(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0001_initial"),
        ("accounting_sync", "0001_initial"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
