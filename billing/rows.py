"""New rows of a model written in one statement, cheaply: a billing run's batch writes hundreds of
invoices, lines and ledger entries at once. On Postgres, one INSERT ... SELECT FROM unnest(...) of the
values as they are: no save preparation value by value (what makes bulk_create costly), so the values
must already be what the columns hold (Decimals, aware datetimes, strings, ids; JSON is encoded here).
Elsewhere (the demo's SQLite), bulk_create. `insert` saves model instances; `insert_values` writes rows
given as values, without making instances (the fields not given take their defaults)."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence

from django.db import connection
from django.db.models import Field, JSONField, Model
from django.utils import timezone

import prepared_statements


def insert(objs: Sequence[Model]) -> None:
    """Save these new instances of one model (an auto primary key, no signals, as bulk_create): their
    primary keys are set. A foreign key given as an instance saved before is written as its key."""
    if not objs:
        return
    model = type(objs[0])
    if connection.vendor != "postgresql":
        model.objects.bulk_create(objs)
        return
    sql, fields = _insert_sql(model)
    with connection.cursor() as cursor:
        prepared_statements.execute(cursor, sql, [_column(field, objs) for field in fields])
        keys = [row[0] for row in cursor.fetchall()]
    for obj, key in zip(objs, keys, strict=True):
        obj.pk = key
        obj._state.adding, obj._state.db = False, connection.alias


def insert_values(model: type[Model], columns: Sequence[str], values: Sequence[Sequence]) -> list[int]:
    """Insert one row per tuple of `values`, in the order of `columns` (field attnames: "invoice_id");
    the other fields take their defaults (a callable default called once for all the rows). The new
    rows' primary keys, in order."""
    if not values:
        return []
    if connection.vendor != "postgresql":
        objs = model.objects.bulk_create([model(**dict(zip(columns, row, strict=True))) for row in values])
        return [obj.pk for obj in objs]
    sql, fields = _insert_sql(model)
    given = {column: index for index, column in enumerate(columns)}
    arrays = []
    for field in fields:
        index = given.get(field.attname)
        if index is None:
            arrays.append([_default(field)] * len(values))
        elif isinstance(field, JSONField):
            arrays.append(
                [None if row[index] is None else json.dumps(row[index], cls=field.encoder) for row in values]
            )
        else:
            arrays.append([row[index] for row in values])
    with connection.cursor() as cursor:
        prepared_statements.execute(cursor, sql, arrays)
        return [row[0] for row in cursor.fetchall()]


def _default(field: Field):
    """What a field not given holds in a new row (as Django would write it)."""
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return timezone.now()
    value = field.get_default()
    return (
        json.dumps(value, cls=field.encoder) if isinstance(field, JSONField) and value is not None else value
    )


@functools.cache
def _insert_sql(model: type[Model]) -> tuple[str, list[Field]]:
    """The statement that inserts the arrays of a model's columns (made once per model)."""
    meta = model._meta
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    arrays = ", ".join(f"%s::{field.db_type(connection).split('(')[0]}[]" for field in fields)
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) "  # noqa: S608 (names from the model)
        f"SELECT * FROM unnest({arrays}) RETURNING {quote(meta.pk.column)}"
    )
    return sql, fields


def _column(field: Field, objs: Sequence[Model]) -> list:
    """The values of one column, as the instances hold them."""
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return [field.pre_save(obj, add=True) for obj in objs]
    values = [getattr(obj, field.attname) for obj in objs]
    if field.is_relation:
        for index, obj in enumerate(objs):
            if values[index] is None and field.is_cached(obj):
                related = field.get_cached_value(obj)
                values[index] = None if related is None else related.pk
                setattr(obj, field.attname, values[index])
    elif isinstance(field, JSONField):
        values = [None if value is None else json.dumps(value, cls=field.encoder) for value in values]
    return values
