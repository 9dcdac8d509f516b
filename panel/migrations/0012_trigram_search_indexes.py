"""Trigram indexes for the staff searches that match part of a word (`icontains`): servers by hostname and
accounts by email. Without them a search reads every server (100,000 at the scale the bench seeds).

They exist in the database only (Django's model state has no trigram index type of its own to compare)."""

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations

INDEXES = (
    ("panel_server", "server_name_trgm", "name"),
    ("panel_user", "user_email_trgm", "email"),
)


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # the demo's SQLite searches by scanning
    for table, name, column in INDEXES:
        # (what `icontains` compares on Postgres: UPPER("column"::text) LIKE UPPER('%...%'))
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" USING gin (upper("{column}"::text) gin_trgm_ops)'
        )


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for _table, name, _column in INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):
    dependencies = [
        ("panel", "0011_backups"),
    ]

    operations = [
        TrigramExtension(),
        migrations.RunPython(create_indexes, drop_indexes),
    ]
