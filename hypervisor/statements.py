"""Prepared statements for the hand-written statements of the hottest paths (an order's claim and addresses,
a worker's operation rows): on Postgres each is PREPAREd once per database session, then EXECUTEd, so that
Postgres does not parse and plan it again at every order (planning a claim or an address allocation cost
Postgres more CPU than running it). Elsewhere (the demo's SQLite) the statement runs as it is.

A prepared statement outlives a rolled-back transaction and ends with its session; the panel talks to
Postgres directly, not through a pooler that would share sessions. Statements prepared here name their
columns (no `*`), so that a column a migration adds does not change the result of one prepared before it.

`Columns` makes model instances of a statement's columns (the one copy: panel.raw_rows re-exports it for the
panel's hand-written statements). A leaf: it imports nothing of the project.
"""

from __future__ import annotations

import functools
import hashlib
import re
import weakref
from collections.abc import Sequence
from typing import Any

from django.db import connection
from django.db.models import Model

# The names of the statements prepared on each open database connection (the DB-API connection object).
_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@functools.cache
def _prepare_statement(sql: str) -> tuple[str, str]:
    """(name, PREPARE statement) of a statement written with %s parameters."""
    name = "vps_" + hashlib.sha1(sql.encode(), usedforsecurity=False).hexdigest()[:20]
    numbers = iter(range(1, sql.count("%s") + 1))
    return name, f"PREPARE {name} AS " + re.sub("%s", lambda _match: f"${next(numbers)}", sql)


def executable(cursor, sql: str) -> str:
    """The statement to send for `sql` (written with %s parameters) on this cursor's connection: on Postgres
    `EXECUTE name(%s, ...)` of the statement prepared on the session (prepared now if it is not yet),
    elsewhere `sql` itself. For callers that hand the statement on (a raw queryset)."""
    if connection.vendor != "postgresql":
        return sql
    name, prepare = _prepare_statement(sql)
    names = _prepared.setdefault(connection.connection, set())
    if name not in names:
        cursor.execute(prepare)
        names.add(name)
    count = sql.count("%s")
    return f"EXECUTE {name}({', '.join(['%s'] * count)})" if count else f"EXECUTE {name}"


def execute(cursor, sql: str, params: Sequence[Any]) -> None:
    """Run a statement written with %s parameters: on Postgres as a statement prepared on this session."""
    cursor.execute(executable(cursor, sql), params)


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
