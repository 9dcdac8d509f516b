"""Per-host usage counters (Host.used_vcpus, used_memory_mib, used_disk_gib), kept by a trigger on the
allocation table in the transaction that changes an allocation: placement reads them instead of summing a
region's allocations on every order. The counters start as the sums of today's allocations."""

import django.db.models.expressions
import django.db.models.functions.comparison
import django.db.models.functions.math
from django.db import migrations, models

COUNT_TRIGGER = """
CREATE FUNCTION hypervisor_allocation_counts() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.host_id = NEW.host_id THEN
        IF (OLD.vcpus, OLD.memory_mib, OLD.disk_gib)
           IS DISTINCT FROM (NEW.vcpus, NEW.memory_mib, NEW.disk_gib) THEN
            UPDATE hypervisor_host
               SET used_vcpus = used_vcpus - OLD.vcpus + NEW.vcpus,
                   used_memory_mib = used_memory_mib - OLD.memory_mib + NEW.memory_mib,
                   used_disk_gib = used_disk_gib - OLD.disk_gib + NEW.disk_gib
             WHERE id = NEW.host_id;
        END IF;
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE hypervisor_host
           SET used_vcpus = used_vcpus - OLD.vcpus,
               used_memory_mib = used_memory_mib - OLD.memory_mib,
               used_disk_gib = used_disk_gib - OLD.disk_gib
         WHERE id = OLD.host_id;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        UPDATE hypervisor_host
           SET used_vcpus = used_vcpus + NEW.vcpus,
               used_memory_mib = used_memory_mib + NEW.memory_mib,
               used_disk_gib = used_disk_gib + NEW.disk_gib
         WHERE id = NEW.host_id;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER hypervisor_allocation_counts
AFTER INSERT OR UPDATE OR DELETE ON hypervisor_allocation
FOR EACH ROW EXECUTE FUNCTION hypervisor_allocation_counts();

"""

# The demo's SQLite: the same counts with row triggers (no plpgsql).
SQLITE_TRIGGERS = [
    """CREATE TRIGGER hypervisor_allocation_counts_insert AFTER INSERT ON hypervisor_allocation BEGIN
        UPDATE hypervisor_host SET used_vcpus = used_vcpus + NEW.vcpus,
            used_memory_mib = used_memory_mib + NEW.memory_mib, used_disk_gib = used_disk_gib + NEW.disk_gib
         WHERE id = NEW.host_id;
    END""",
    """CREATE TRIGGER hypervisor_allocation_counts_delete AFTER DELETE ON hypervisor_allocation BEGIN
        UPDATE hypervisor_host SET used_vcpus = used_vcpus - OLD.vcpus,
            used_memory_mib = used_memory_mib - OLD.memory_mib, used_disk_gib = used_disk_gib - OLD.disk_gib
         WHERE id = OLD.host_id;
    END""",
    """CREATE TRIGGER hypervisor_allocation_counts_update AFTER UPDATE ON hypervisor_allocation BEGIN
        UPDATE hypervisor_host SET used_vcpus = used_vcpus - OLD.vcpus,
            used_memory_mib = used_memory_mib - OLD.memory_mib, used_disk_gib = used_disk_gib - OLD.disk_gib
         WHERE id = OLD.host_id;
        UPDATE hypervisor_host SET used_vcpus = used_vcpus + NEW.vcpus,
            used_memory_mib = used_memory_mib + NEW.memory_mib, used_disk_gib = used_disk_gib + NEW.disk_gib
         WHERE id = NEW.host_id;
    END""",
]

# Today's allocations, counted (both databases).
BACKFILL = """
UPDATE hypervisor_host SET
    used_vcpus = COALESCE(
        (SELECT SUM(vcpus) FROM hypervisor_allocation a WHERE a.host_id = hypervisor_host.id), 0),
    used_memory_mib = COALESCE(
        (SELECT SUM(memory_mib) FROM hypervisor_allocation a WHERE a.host_id = hypervisor_host.id), 0),
    used_disk_gib = COALESCE(
        (SELECT SUM(disk_gib) FROM hypervisor_allocation a WHERE a.host_id = hypervisor_host.id), 0)
"""


def add_triggers(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        if schema_editor.connection.vendor == "postgresql":
            cursor.execute(COUNT_TRIGGER)
        else:
            for statement in SQLITE_TRIGGERS:
                cursor.execute(statement)
        cursor.execute(BACKFILL)


def drop_triggers(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        if schema_editor.connection.vendor == "postgresql":
            cursor.execute(DROP_TRIGGER)
        else:
            for name in ("insert", "delete", "update"):
                cursor.execute(f"DROP TRIGGER IF EXISTS hypervisor_allocation_counts_{name}")


DROP_TRIGGER = """
DROP TRIGGER IF EXISTS hypervisor_allocation_counts ON hypervisor_allocation;
DROP FUNCTION IF EXISTS hypervisor_allocation_counts();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("hypervisor", "0004_backups"),
    ]

    operations = [
        migrations.AddField(
            model_name="host",
            name="used_disk_gib",
            field=models.PositiveBigIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="host",
            name="used_memory_mib",
            field=models.PositiveBigIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="host",
            name="used_vcpus",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="host",
            name="free_disk_gib",
            field=models.GeneratedField(
                db_persist=True,
                expression=models.ExpressionWrapper(
                    django.db.models.expressions.CombinedExpression(
                        django.db.models.functions.comparison.Greatest(
                            django.db.models.functions.comparison.Cast(
                                django.db.models.functions.math.Floor(
                                    django.db.models.expressions.CombinedExpression(
                                        django.db.models.expressions.CombinedExpression(
                                            models.F("disk_gib_total"), "-", models.F("reserved_disk_gib")
                                        ),
                                        "*",
                                        models.F("disk_allocation_ratio"),
                                    )
                                ),
                                models.BigIntegerField(),
                            ),
                            models.Value(0),
                            output_field=models.BigIntegerField(),
                        ),
                        "-",
                        models.F("used_disk_gib"),
                    ),
                    output_field=models.BigIntegerField(),
                ),
                output_field=models.BigIntegerField(),
            ),
        ),
        migrations.AddField(
            model_name="host",
            name="free_memory_mib",
            field=models.GeneratedField(
                db_persist=True,
                expression=models.ExpressionWrapper(
                    django.db.models.expressions.CombinedExpression(
                        django.db.models.functions.comparison.Greatest(
                            django.db.models.functions.comparison.Cast(
                                django.db.models.functions.math.Floor(
                                    django.db.models.expressions.CombinedExpression(
                                        django.db.models.expressions.CombinedExpression(
                                            models.F("memory_mib_total"), "-", models.F("reserved_memory_mib")
                                        ),
                                        "*",
                                        models.F("ram_allocation_ratio"),
                                    )
                                ),
                                models.BigIntegerField(),
                            ),
                            models.Value(0),
                            output_field=models.BigIntegerField(),
                        ),
                        "-",
                        models.F("used_memory_mib"),
                    ),
                    output_field=models.BigIntegerField(),
                ),
                output_field=models.BigIntegerField(),
            ),
        ),
        migrations.AddField(
            model_name="host",
            name="free_vcpus",
            field=models.GeneratedField(
                db_persist=True,
                expression=models.ExpressionWrapper(
                    django.db.models.expressions.CombinedExpression(
                        django.db.models.functions.comparison.Greatest(
                            django.db.models.functions.comparison.Cast(
                                django.db.models.functions.math.Floor(
                                    django.db.models.expressions.CombinedExpression(
                                        django.db.models.expressions.CombinedExpression(
                                            models.F("vcpus_total"), "-", models.F("reserved_vcpus")
                                        ),
                                        "*",
                                        models.F("cpu_allocation_ratio"),
                                    )
                                ),
                                models.BigIntegerField(),
                            ),
                            models.Value(0),
                            output_field=models.BigIntegerField(),
                        ),
                        "-",
                        models.F("used_vcpus"),
                    ),
                    output_field=models.BigIntegerField(),
                ),
                output_field=models.BigIntegerField(),
            ),
        ),
        migrations.AddIndex(
            model_name="host",
            index=models.Index(
                models.F("region"),
                models.OrderBy(models.F("free_memory_mib"), descending=True),
                models.F("id"),
                condition=models.Q(("enabled", True), ("maintenance", False), ("state", "ready")),
                name="host_placement",
            ),
        ),
        migrations.RunPython(add_triggers, drop_triggers),
    ]
