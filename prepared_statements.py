"""Prepared statements for the hand-written statements of the hottest paths (an order's claim, addresses and
billing rows, a worker's operation rows): on Postgres each is PREPAREd once per database session, then
EXECUTEd, so that Postgres does not parse and plan it again at every order (planning a claim, an address
allocation or an invoice's numbering cost Postgres more CPU than running it). Elsewhere (the demo's SQLite)
the statement runs as it is.

A statement is written as for `cursor.execute`: positional `%s` or named `%(name)s` parameters (a name used
twice is one parameter), `%%` for a literal percent sign. Postgres chooses each parameter's type when it
prepares the statement (from a cast written on it, `%s::jsonb[]`, or from where it stands); the types are
read back in the same round trip and each value is sent cast to its parameter's type, so that an array of
strings or of NULLs arrives as that type. Only statements whose text does not change from call to call
belong here: an IN list of varying length would prepare one statement per length (`any_of` writes one
text for any number of ids).

A prepared statement outlives a rolled-back transaction and ends with its session; the panel talks to
Postgres directly, not through a pooler that would share sessions. Statements prepared here name their
columns (no `*` in what they return), so that a column a migration adds does not change the result of one
prepared before it.

Shared by the three apps (billing may not import hypervisor, nor hypervisor billing), so a leaf of its own:
it imports nothing of the project.
"""

from __future__ import annotations

import functools
import hashlib
import re
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connection

# The statements prepared on each open database connection (the DB-API connection object): the EXECUTE
# statement of each by its name.
_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

# Recorded for a statement before its PREPARE is sent, until its answer is: an interrupted PREPARE may or may
# not have been done, and the next use looks before preparing.
_PREPARING = "preparing"

# What psycopg2 reads in a statement's text: a literal percent sign, a positional or a named parameter.
_PLACEHOLDER = re.compile(r"%%|%s|%\((\w+)\)s")


@functools.cache
def _compiled(sql: str) -> tuple[str, str, tuple[str, ...]]:
    """(name, PREPARE statement, the caller's placeholder of each parameter in order) of a statement."""
    name = "vps_" + hashlib.sha1(sql.encode(), usedforsecurity=False).hexdigest()[:20]
    keys: list[str | None] = []  # by parameter number - 1; None for a positional one

    def number(match: re.Match) -> str:
        if match.group(0) == "%%":
            return "%"  # the PREPARE goes without parameters: psycopg2 leaves its text as it is
        key = match.group(1)
        if key is not None and key in keys:
            return f"${keys.index(key) + 1}"
        keys.append(key)
        return f"${len(keys)}"

    body = _PLACEHOLDER.sub(number, sql)
    return name, f"PREPARE {name} AS {body}", tuple("%s" if key is None else f"%({key})s" for key in keys)


def _statement(cursor, sql: str) -> str:
    """The statement to send for `sql` (written with %s or %(name)s parameters) on this cursor's connection:
    on Postgres `EXECUTE name(...)` of the statement prepared on the session (prepared now if it is not yet),
    elsewhere `sql` itself."""
    if connection.vendor != "postgresql":
        return sql
    name, prepare, placeholders = _compiled(sql)
    prepared = _prepared.setdefault(connection.connection, {})
    execute_sql = prepared.get(name)
    if execute_sql is None or execute_sql is _PREPARING:
        types = None
        if execute_sql is _PREPARING:
            # An earlier PREPARE of it on this session was interrupted (an error or a time limit raised
            # between its sending and the recording of its answer): it may have been prepared. Preparing it
            # again would fail ("already exists") at every use for the connection's life.
            cursor.execute(
                f"SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = '{name}'"
            )
            row = cursor.fetchone()
            types = row[0] if row else None
        if types is None:
            prepared[name] = _PREPARING
            # Prepared, and the types Postgres chose for its parameters read back, in one round trip.
            cursor.execute(
                f"{prepare}; SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = '{name}'"
            )
            types = cursor.fetchone()[0]
        arguments = ", ".join(f"{mark}::{kind}" for mark, kind in zip(placeholders, types, strict=True))
        execute_sql = prepared[name] = f"EXECUTE {name}({arguments})" if arguments else f"EXECUTE {name}"
    return execute_sql


def execute(cursor, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> None:
    """Run a statement written with %s or %(name)s parameters: on Postgres as a statement prepared on this
    session."""
    cursor.execute(_statement(cursor, sql), params)


def any_of(values: Sequence[int]) -> tuple[str, list[Any]]:
    """A condition's right-hand side that matches any of these ids, with its parameters: `= %s` for one;
    for more, on Postgres `= ANY(%s::bigint[])`, one array parameter, so that the statement's text is the
    same for any number of values (and is prepared once), elsewhere `IN (%s, ...)`. One value keeps its plain
    equality: with `= ANY` for a single id, Postgres's generic plan for an array of unknown length cost an
    order 0.4-0.8 ms more CPU (measured 2026-12-07, the order's two billing reads)."""
    if len(values) == 1:
        return "= %s", list(values)
    if connection.vendor == "postgresql":
        return "= ANY(%s::bigint[])", [list(values)]
    return f"IN ({', '.join(['%s'] * len(values))})", list(values)
