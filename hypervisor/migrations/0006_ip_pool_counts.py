"""Pools' address counts kept by statement triggers on hypervisor_ipaddress as rows of changes
(hypervisor_ippoolcount), so that the pool pages and lists read a handful of rows instead of counting every
address, and concurrent orders never wait on a shared counter. The counts start from today's addresses."""

from django.db import migrations, models

# One row per pool a statement touched: +1 row per address inserted, -1 per address deleted; taken and
# reserved follow the rows' consumer and reserved flag before and after.
COUNT_TRIGGERS = """
CREATE FUNCTION hypervisor_ipaddress_counts() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO hypervisor_ippoolcount (pool_id, total, used, reserved)
        SELECT pool_id, COUNT(*), COUNT(*) FILTER (WHERE consumer_uuid IS NOT NULL),
               COUNT(*) FILTER (WHERE consumer_uuid IS NULL AND reserved)
          FROM new_rows GROUP BY pool_id;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO hypervisor_ippoolcount (pool_id, total, used, reserved)
        SELECT pool_id, -COUNT(*), -COUNT(*) FILTER (WHERE consumer_uuid IS NOT NULL),
               -COUNT(*) FILTER (WHERE consumer_uuid IS NULL AND reserved)
          FROM old_rows GROUP BY pool_id;
    ELSE
        INSERT INTO hypervisor_ippoolcount (pool_id, total, used, reserved)
        SELECT pool_id, SUM(total), SUM(used), SUM(reserved) FROM (
            SELECT pool_id, 1 AS total, (consumer_uuid IS NOT NULL)::int AS used,
                   (consumer_uuid IS NULL AND reserved)::int AS reserved FROM new_rows
            UNION ALL
            SELECT pool_id, -1, -(consumer_uuid IS NOT NULL)::int, -(consumer_uuid IS NULL AND reserved)::int
              FROM old_rows
        ) AS changes
        GROUP BY pool_id
        HAVING SUM(total) <> 0 OR SUM(used) <> 0 OR SUM(reserved) <> 0;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER hypervisor_ipaddress_counts_insert AFTER INSERT ON hypervisor_ipaddress
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION hypervisor_ipaddress_counts();
CREATE TRIGGER hypervisor_ipaddress_counts_update AFTER UPDATE ON hypervisor_ipaddress
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION hypervisor_ipaddress_counts();
CREATE TRIGGER hypervisor_ipaddress_counts_delete AFTER DELETE ON hypervisor_ipaddress
REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION hypervisor_ipaddress_counts();

"""

# The demo's SQLite: row triggers writing one row of changes per address changed.
SQLITE_TRIGGERS = [
    """CREATE TRIGGER hypervisor_ipaddress_counts_insert AFTER INSERT ON hypervisor_ipaddress BEGIN
        INSERT INTO hypervisor_ippoolcount (pool_id, total, used, reserved)
        VALUES (NEW.pool_id, 1, NEW.consumer_uuid IS NOT NULL, NEW.consumer_uuid IS NULL AND NEW.reserved);
    END""",
    """CREATE TRIGGER hypervisor_ipaddress_counts_delete AFTER DELETE ON hypervisor_ipaddress BEGIN
        INSERT INTO hypervisor_ippoolcount (pool_id, total, used, reserved)
        VALUES (OLD.pool_id, -1, -(OLD.consumer_uuid IS NOT NULL), -(OLD.consumer_uuid IS NULL AND OLD.reserved));
    END""",
    """CREATE TRIGGER hypervisor_ipaddress_counts_update AFTER UPDATE ON hypervisor_ipaddress
    WHEN (NEW.consumer_uuid IS NULL) != (OLD.consumer_uuid IS NULL) OR NEW.reserved != OLD.reserved BEGIN
        INSERT INTO hypervisor_ippoolcount (pool_id, total, used, reserved)
        VALUES (NEW.pool_id, 0, (NEW.consumer_uuid IS NOT NULL) - (OLD.consumer_uuid IS NOT NULL),
                (NEW.consumer_uuid IS NULL AND NEW.reserved) - (OLD.consumer_uuid IS NULL AND OLD.reserved));
    END""",
]

# Today's addresses, counted (both databases).
BACKFILL = """
INSERT INTO hypervisor_ippoolcount (pool_id, total, used, reserved)
SELECT pool_id, COUNT(*), SUM(CASE WHEN consumer_uuid IS NOT NULL THEN 1 ELSE 0 END),
       SUM(CASE WHEN consumer_uuid IS NULL AND reserved THEN 1 ELSE 0 END)
  FROM hypervisor_ipaddress GROUP BY pool_id
"""


def add_triggers(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        if schema_editor.connection.vendor == "postgresql":
            cursor.execute(COUNT_TRIGGERS)
        else:
            for statement in SQLITE_TRIGGERS:
                cursor.execute(statement)
        cursor.execute(BACKFILL)


def drop_triggers(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        if schema_editor.connection.vendor == "postgresql":
            cursor.execute(DROP_TRIGGERS)
        else:
            for name in ("insert", "delete", "update"):
                cursor.execute(f"DROP TRIGGER IF EXISTS hypervisor_ipaddress_counts_{name}")


DROP_TRIGGERS = """
DROP TRIGGER IF EXISTS hypervisor_ipaddress_counts_insert ON hypervisor_ipaddress;
DROP TRIGGER IF EXISTS hypervisor_ipaddress_counts_update ON hypervisor_ipaddress;
DROP TRIGGER IF EXISTS hypervisor_ipaddress_counts_delete ON hypervisor_ipaddress;
DROP FUNCTION IF EXISTS hypervisor_ipaddress_counts();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("hypervisor", "0005_host_usage_counters"),
    ]

    operations = [
        migrations.CreateModel(
            name="IPPoolCount",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("pool_id", models.BigIntegerField()),
                ("total", models.IntegerField(default=0)),
                ("used", models.IntegerField(default=0)),
                ("reserved", models.IntegerField(default=0)),
            ],
        ),
        migrations.AddIndex(
            model_name="ipaddress",
            index=models.Index(
                condition=models.Q(
                    ("consumer_uuid__isnull", True), ("released_at__isnull", False), ("reserved", False)
                ),
                fields=["pool", "released_at"],
                name="ipaddress_cooling",
            ),
        ),
        migrations.AddIndex(
            model_name="ippoolcount",
            index=models.Index(fields=["pool_id"], name="hypervisor__pool_id_7d60bf_idx"),
        ),
        migrations.AddIndex(
            model_name="ipaddress",
            index=models.Index(fields=["pool", "value", "id"], name="ipaddress_pool_order"),
        ),
        migrations.RunPython(add_triggers, drop_triggers),
    ]
