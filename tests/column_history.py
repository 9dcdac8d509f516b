"""Every value a column takes, as Postgres writes it: for tests of the state machines.

`with ColumnHistory(Host, "state") as history:` installs a trigger on the model's table that records each
inserted row's value and each change of it, whatever wrote it (a save, a conditional or bulk update, a
bulk insert), in the order the database saw them. The trigger and its log live in the test's session and
are dropped on leaving the block.
"""

from __future__ import annotations

from django.db import connection, models

LOG = "column_history_log"


class ColumnHistory:
    def __init__(self, model: type[models.Model], field: str):
        self.table = model._meta.db_table
        self.column = model._meta.get_field(field).column
        self.pk = model._meta.pk.column
        self.trigger = f"column_history_{self.table}_{self.column}"

    def __enter__(self) -> ColumnHistory:
        table, column, pk, trigger = self.table, self.column, self.pk, self.trigger
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {LOG} "
                "(seq bigserial PRIMARY KEY, tbl text, row_id text, old text, new text)"
            )
            cursor.execute(f"DELETE FROM {LOG} WHERE tbl = %s", [table])
            cursor.execute(
                f"""
                CREATE FUNCTION pg_temp.{trigger}() RETURNS trigger LANGUAGE plpgsql AS $body$
                BEGIN
                    IF TG_OP = 'INSERT' THEN
                        INSERT INTO {LOG} (tbl, row_id, old, new)
                        VALUES (TG_TABLE_NAME, NEW.{pk}::text, NULL, NEW.{column});
                    ELSIF NEW.{column} IS DISTINCT FROM OLD.{column} THEN
                        INSERT INTO {LOG} (tbl, row_id, old, new)
                        VALUES (TG_TABLE_NAME, NEW.{pk}::text, OLD.{column}, NEW.{column});
                    END IF;
                    RETURN NULL;
                END
                $body$
                """
            )
            cursor.execute(
                f'CREATE TRIGGER {trigger} AFTER INSERT OR UPDATE ON "{table}" '
                f"FOR EACH ROW EXECUTE FUNCTION pg_temp.{trigger}()"
            )
        return self

    def __exit__(self, *exc_info) -> bool:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP TRIGGER IF EXISTS {self.trigger} ON "{self.table}"')
            cursor.execute(f"DROP FUNCTION IF EXISTS pg_temp.{self.trigger}()")
        return False

    def _rows(self) -> list[tuple[str, str | None, str]]:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT row_id, old, new FROM {LOG} WHERE tbl = %s ORDER BY seq", [self.table])
            return list(cursor.fetchall())

    def inserted(self) -> list[str]:
        """The value of each row inserted, in order."""
        return [new for _row, old, new in self._rows() if old is None]

    def moves(self) -> list[tuple[str, str]]:
        """Each change of the value of a row, (old, new), in order."""
        return [(old, new) for _row, old, new in self._rows() if old is not None]

    def trail(self, pk: object) -> list[str]:
        """The values one row went through (from its insertion, if it was inserted inside the block)."""
        rows = [(old, new) for row, old, new in self._rows() if row == str(pk)]
        if not rows:
            return []
        first = [] if rows[0][0] is None else [rows[0][0]]
        return first + [new for _old, new in rows]
