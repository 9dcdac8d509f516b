"""Hand-written statements for the few on the hottest paths (an API request's token, an order's customer lock
and inserts), where compiling an ORM query costs more CPU than Postgres spends answering it: model instances
from the columns of a SELECT, and a model's INSERT compiled once. The column lists come from the models, so
a new field is selected and inserted too.

    token = Columns(ApiToken, "t")
    cursor.execute(f"SELECT {token.sql} FROM panel_apitoken t WHERE ...")
    instance = token.build(cursor.fetchone())

`Columns` is hypervisor.statements' (the hypervisor's hot paths use it too, and may not import panel).
"""

from __future__ import annotations

import functools

from django.db import connection
from django.db.models import Field, Model

from hypervisor.statements import Columns

__all__ = ["Columns", "insert"]


@functools.cache
def _insert_statement(model: type[Model]) -> tuple[str, list[Field], Field | None]:
    """INSERT of every local concrete column (but a database-generated primary key, returned instead)."""
    quote = connection.ops.quote_name
    pk = model._meta.pk
    generated = pk if getattr(pk, "db_returning", False) else None
    fields = [field for field in model._meta.local_concrete_fields if field is not generated]
    columns = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({placeholders})"  # noqa: S608
    return sql, fields, generated


def insert(instance: Model, *, on_conflict: str = "") -> bool:
    """Insert the instance's row as `save(force_insert=True)` would (defaults, auto_now fields), in a
    statement compiled once per model, and sending no model signals (the models of the order's path have no
    receivers). `on_conflict`, e.g. "(mac) DO NOTHING", is the statement's ON CONFLICT clause. Returns
    whether a row was inserted (False only when the conflict clause skipped it)."""
    sql, fields, generated = _insert_statement(type(instance))
    values = [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]
    if on_conflict:
        sql = f"{sql} ON CONFLICT {on_conflict}"
    if generated is not None:
        sql = f"{sql} RETURNING {connection.ops.quote_name(generated.column)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        if generated is not None:
            row = cursor.fetchone()
            inserted = row is not None
            if inserted:
                setattr(instance, generated.attname, row[0])
        else:
            inserted = cursor.rowcount == 1
    if inserted:
        instance._state.adding = False
        instance._state.db = connection.alias
    return inserted
