"""Hosts for migrations: the URI other hosts' libvirtd use to reach a host and the address of the data
stream; a consumer may hold an allocation on two hosts while it migrates (one per host)."""

from importlib import import_module

from django.db import migrations, models

COUNTERS = import_module("hypervisor.migrations.0005_host_usage_counters")


def drop_sqlite_triggers(apps, schema_editor):
    """SQLite rebuilds the host and allocation tables to change them, which the allocation's row triggers
    (they name the host table) do not survive: they go first and come back last (the demo's database)."""
    if schema_editor.connection.vendor == "sqlite":
        with schema_editor.connection.cursor() as cursor:
            for name in ("insert", "delete", "update"):
                cursor.execute(f"DROP TRIGGER IF EXISTS hypervisor_allocation_counts_{name}")


def add_sqlite_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        with schema_editor.connection.cursor() as cursor:
            for statement in COUNTERS.SQLITE_TRIGGERS:
                cursor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("hypervisor", "0006_ip_pool_counts"),
    ]

    operations = [
        migrations.RunPython(drop_sqlite_triggers, add_sqlite_triggers),
        migrations.AddField(
            model_name="host",
            name="migration_address",
            field=models.CharField(
                blank=True,
                help_text=(
                    "Where the migration data stream goes, e.g. tcp://10.0.0.2. Empty: libvirt's default."
                ),
                max_length=255,
                verbose_name="migration address",
            ),
        ),
        migrations.AddField(
            model_name="host",
            name="migration_uri",
            field=models.CharField(
                blank=True,
                help_text=(
                    "The libvirt URI other hosts use to migrate servers here, e.g. "
                    "qemu+tls://10.0.0.2/system. Empty: the host's URI."
                ),
                max_length=500,
                verbose_name="migration URI",
            ),
        ),
        migrations.AlterField(
            model_name="allocation",
            name="consumer_uuid",
            field=models.UUIDField(),
        ),
        migrations.AddConstraint(
            model_name="allocation",
            constraint=models.UniqueConstraint(
                fields=("consumer_uuid", "host"), name="allocation_consumer_host_unique"
            ),
        ),
        migrations.RunPython(add_sqlite_triggers, drop_sqlite_triggers),
    ]
