"""Prepared statements for the hand-written statements of the hottest paths (an order's claim, addresses and
billing rows, a worker's operation rows): on Postgres each is PREPAREd once per database session, then
EXECUTEd, so that Postgres does not parse and plan it again at every order (planning a claim, an address
allocation or an invoice's numbering cost Postgres more CPU than running it). Elsewhere (the demo's SQLite)
the statement runs as it is.

A statement is written as for `cursor.execute`: positional `%s` or named `%(name)s` parameters (a name used
twice is one parameter), `%%` for a literal percent sign. A cast written on a parameter (`%s::jsonb[]`) is
given to the statement's parameter and to the value sent for it, so that an array of strings or of NULLs
arrives as the type the statement declares. Only statements whose text does not change from call to call
belong here (an IN list of varying length would prepare one statement per length: use `= ANY(%s)`).

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

# The names of the statements prepared on each open database connection (the DB-API connection object).
_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

# A parameter (positional or named) and the cast written on it, if any: `%s`, `%(ids)s::bigint[]`,
# `%s::timestamp with time zone[]`.
_PARAMETER = re.compile(
    r"%(?:\((?P<name>\w+)\))?s"
    r"(?P<cast>::(?:timestamp with time zone|double precision|[a-z_][a-z_0-9]*)(?:\[\])?)?"
)


@functools.cache
def _compiled(sql: str) -> tuple[str, str, str]:
    """(name, PREPARE statement, EXECUTE statement with the caller's placeholders) of a statement."""
    name = "vps_" + hashlib.sha1(sql.encode(), usedforsecurity=False).hexdigest()[:20]
    names: list[str | None] = []  # by parameter number - 1; None for a positional one
    arguments: list[str] = []

    def number(match: re.Match) -> str:
        key, cast = match.group("name"), match.group("cast") or ""
        if key is not None and key in names:
            return f"${names.index(key) + 1}{cast}"
        names.append(key)
        arguments.append(("%s" if key is None else f"%({key})s") + cast)
        return f"${len(names)}{cast}"

    body = _PARAMETER.sub(number, sql).replace("%%", "%")
    execute_sql = f"EXECUTE {name}({', '.join(arguments)})" if arguments else f"EXECUTE {name}"
    return name, f"PREPARE {name} AS {body}", execute_sql


def _statement(cursor, sql: str) -> str:
    """The statement to send for `sql` (written with %s or %(name)s parameters) on this cursor's connection:
    on Postgres `EXECUTE name(...)` of the statement prepared on the session (prepared now if it is not yet),
    elsewhere `sql` itself."""
    if connection.vendor != "postgresql":
        return sql
    name, prepare, execute_sql = _compiled(sql)
    names = _prepared.setdefault(connection.connection, set())
    if name not in names:
        cursor.execute(prepare)
        names.add(name)
    return execute_sql


def execute(cursor, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> None:
    """Run a statement written with %s or %(name)s parameters: on Postgres as a statement prepared on this
    session."""
    cursor.execute(_statement(cursor, sql), params)


def any_of(values: Sequence[Any], array_type: str = "bigint") -> tuple[str, list[Any]]:
    """A condition's right-hand side that matches any of `values`, with its parameters: `= %s` for one value;
    for more, on Postgres `= ANY(%s::bigint[])`, one array parameter, so that the statement's text is the
    same for any number of values (and is prepared once), elsewhere `IN (%s, ...)`. One value keeps its plain
    equality: Postgres's generic plan for an array of unknown length cost an order 0.8 ms more CPU (measured
    2026-12-07, the order's two billing reads)."""
    if len(values) == 1:
        return "= %s", list(values)
    if connection.vendor == "postgresql":
        return f"= ANY(%s::{array_type}[])", [list(values)]
    return f"IN ({', '.join(['%s'] * len(values))})", list(values)
