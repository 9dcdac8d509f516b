"""Model instances of the columns of a hand-written statement (`Columns`): the one copy, used by the
hypervisor's hot paths and re-exported by panel.raw_rows for the panel's. How those statements are sent,
prepared once per database session on Postgres, is `prepared_statements`. A leaf: it imports nothing of the
project.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from django.db import connection
from django.db.models import Model


class Columns:
    """The concrete columns of `model` (but `exclude`), named for a SELECT list or RETURNING (under a table
    `alias` when given), and how to make an instance of a row's values for them (the excluded fields deferred,
    loaded on first use), converted as the ORM converts them: the backend's converters (e.g. SQLite's
    datetimes and UUIDs), then the field's (e.g. JSON). The one copy: panel.raw_rows uses it too."""

    def __init__(self, model: type[Model], alias: str = "", exclude: Sequence[str] = ()):
        fields = [field for field in model._meta.concrete_fields if field.name not in exclude]
        quote = connection.ops.quote_name
        prefix = f"{alias}." if alias else ""
        self.model = model
        self.width = len(fields)
        self.sql = ", ".join(f"{prefix}{quote(field.column)}" for field in fields)
        self.attnames = [field.attname for field in fields]
        self._pk = self.attnames.index(model._meta.pk.attname)
        self._converters = []
        for index, field in enumerate(fields):
            column = field.get_col(alias or model._meta.db_table)
            converters = [*connection.ops.get_db_converters(column), *column.get_db_converters(connection)]
            if converters:
                self._converters.append((index, column, converters))

    def build(self, row: Sequence[Any], start: int = 0) -> Model | None:
        """The instance made of row[start:start + width]; None when its primary key is NULL (an outer join
        found no row)."""
        values = list(row[start : start + self.width])
        if values[self._pk] is None:
            return None
        for index, column, converters in self._converters:
            for convert in converters:
                values[index] = convert(values[index], column, connection)
        return self.model.from_db(connection.alias, self.attnames, values)


@functools.cache
def columns(model: type[Model]) -> Columns:
    return Columns(model)
