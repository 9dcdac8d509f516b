"""The statements a worker asks for every operation it runs (and every create), written by hand: the
operation locked with its server, host, plan and image, the host's heavy operations ahead of it, the lease
and outcome writes, the server's addresses. Compiling the ORM's queries cost far more CPU than Postgres
spends answering them (about 4 ms for the locked operation with its related rows, against 0.3 ms here).

The column lists come from the models (a new field is read too) and are built once per process; values are
converted as the ORM converts them (the backend's converters, then the field's), and parameters are
prepared by their fields, so the statements run on Postgres and on the demo's SQLite alike. They send no
model signals: the ORM's `update()` they replace sends none either.

On Postgres each statement is a prepared statement of the database session (PREPARE once per connection,
then EXECUTE): planning the operation's five-table join cost Postgres about 1 ms of CPU at every execution,
more than running it. A prepared statement outlives a rolled-back transaction and ends with its session;
the panel talks to Postgres directly, not through a pooler that would share sessions.
"""

from __future__ import annotations

import functools
import hashlib
import re
import weakref
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Model
from django.utils import timezone

from billing.models import Plan
from hypervisor.models import Host, Image, IPAddress, IPPool
from panel.models import Operation, Server
from panel.raw_rows import Columns as _Columns
from panel.servers.models import address_order


def _table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _column(model: type[Model], name: str) -> str:
    return connection.ops.quote_name(model._meta.get_field(name).column)


def _value(model: type[Model], name: str, value: Any) -> Any:
    """The parameter for a value of the field as the ORM would send it (a UUID's hex on SQLite, a naive UTC
    datetime there, JSON adapted for Postgres)."""
    return model._meta.get_field(name).get_db_prep_save(value, connection)


# The names of the statements prepared on each open database connection (the DB-API connection object).
_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@functools.cache
def _prepare_statement(sql: str) -> tuple[str, str]:
    """(name, PREPARE statement) of a statement written with %s parameters."""
    name = "vps_" + hashlib.sha1(sql.encode(), usedforsecurity=False).hexdigest()[:20]
    numbers = iter(range(1, sql.count("%s") + 1))
    return name, f"PREPARE {name} AS " + re.sub("%s", lambda _match: f"${next(numbers)}", sql)


def _execute(cursor, sql: str, params: Sequence[Any]) -> None:
    """Run one of this module's statements: on Postgres as a statement prepared on this connection."""
    if connection.vendor != "postgresql":
        cursor.execute(sql, params)
        return
    name, prepare = _prepare_statement(sql)
    names = _prepared.setdefault(connection.connection, set())
    if name not in names:
        cursor.execute(prepare)
        names.add(name)
    cursor.execute(
        f"EXECUTE {name}({', '.join(['%s'] * len(params))})" if params else f"EXECUTE {name}", params
    )


@functools.cache
def _lock_statement() -> tuple[str, tuple[_Columns, ...]]:
    parts = (
        _Columns(Operation, "o"),
        _Columns(Server, "s"),
        _Columns(Host, "h", exclude=("inventory",)),  # the probe's facts, large and not needed here
        _Columns(Plan, "p"),
        _Columns(Image, "i"),
    )
    server_fk, pk = _column(Operation, "server"), _column(Server, "id")
    now = ", clock_timestamp()" if connection.vendor == "postgresql" else ""
    lock = " FOR UPDATE OF o" if connection.features.has_select_for_update_of else ""
    sql = (
        f"SELECT {', '.join(part.sql for part in parts)}{now} "  # noqa: S608 (names from the models)
        f"FROM {_table(Operation)} o JOIN {_table(Server)} s ON s.{pk} = o.{server_fk} "
        f"LEFT JOIN {_table(Host)} h ON h.{_column(Host, 'id')} = s.{_column(Server, 'host')} "
        f"JOIN {_table(Plan)} p ON p.{_column(Plan, 'id')} = s.{_column(Server, 'plan')} "
        f"JOIN {_table(Image)} i ON i.{_column(Image, 'id')} = s.{_column(Server, 'image')} "
        f"WHERE o.{_column(Operation, 'id')} = %s{lock}"
    )
    return sql, parts


def lock(operation_id: str) -> tuple[Operation, datetime] | None:
    """In the caller's transaction, one statement: the operation's row locked (only it), with its server and
    the server's host, plan and image; and the database's clock (leases.db_now), read with the row. None
    when there is no such operation.

    The clock is read as the row is: after the lock when the row changed while this statement waited for it
    (Postgres reads the row again), else at most the wait earlier. An earlier clock only makes a lease look
    alive a little longer: a lease is never taken before it ran out."""
    sql, (operation, server, host, plan, image) = _lock_statement()
    with connection.cursor() as cursor:
        _execute(cursor, sql, [_value(Operation, "id", operation_id)])
        row = cursor.fetchone()
    if row is None:
        return None
    now = row[-1] if connection.vendor == "postgresql" else timezone.now()
    found = operation.build(row)
    start = operation.width
    owner = server.build(row, start)
    start += server.width
    Server.host.field.set_cached_value(owner, host.build(row, start))
    start += host.width
    Server.plan.field.set_cached_value(owner, plan.build(row, start))
    start += plan.width
    Server.image.field.set_cached_value(owner, image.build(row, start))
    Operation.server.field.set_cached_value(found, owner)
    return found, now


@functools.cache
def _ahead_statement(types: int, statuses: int) -> str:
    o_server, s_id, s_host = _column(Operation, "server"), _column(Server, "id"), _column(Server, "host")
    type_, status = _column(Operation, "type"), _column(Operation, "status")
    owner, expires = _column(Operation, "lease_owner"), _column(Operation, "lease_expires_at")
    return (
        f"SELECT COUNT(*) FROM (SELECT 1 FROM {_table(Operation)} o "  # noqa: S608 (names from the models)
        f"JOIN {_table(Server)} s ON s.{s_id} = o.{o_server} "
        f"WHERE s.{s_host} = %s AND o.{type_} IN ({', '.join(['%s'] * types)}) "
        f"AND o.{status} IN ({', '.join(['%s'] * statuses)}) AND o.{_column(Operation, 'deadline')} >= %s "
        f"AND o.{_column(Operation, 'id')} <> %s "
        f"AND ((o.{owner} > '' AND o.{expires} >= %s) OR o.{_column(Operation, 'created_at')} < %s) "
        "LIMIT %s) ahead"
    )


def heavy_ahead(
    operation: Operation,
    host_id: int,
    types: Iterable[str],
    statuses: Iterable[str],
    now: datetime,
    *,
    upto: int,
) -> int:
    """How many (counting at most `upto`) open operations of `types` on the host are ahead of this one:
    running under a live lease, or older. The caller holds the host's turn lock."""
    types, statuses = list(types), list(statuses)
    at = _value(Operation, "deadline", now)
    params = [
        host_id,
        *types,
        *statuses,
        at,
        _value(Operation, "id", operation.pk),
        at,
        _value(Operation, "created_at", operation.created_at),
        upto,
    ]
    with connection.cursor() as cursor:
        _execute(cursor, _ahead_statement(len(types), len(statuses)), params)
        return cursor.fetchone()[0]


def _update(model: type[Model], pk: Any, changes: dict[str, Any], where: dict[str, Any]) -> int:
    """UPDATE the row's fields to `changes` (field: value; a model instance stands for its primary key)
    where each of `where` holds (field: value; None: IS NULL; a tuple: IN); the rows changed."""
    assignments = ", ".join(f"{_column(model, name)} = %s" for name in changes)
    params = [_value(model, name, getattr(value, "pk", value)) for name, value in changes.items()]
    params.append(_value(model, "id", pk))
    conditions = ""
    for name, value in where.items():
        if value is None:
            conditions += f" AND {_column(model, name)} IS NULL"
        elif isinstance(value, tuple):
            conditions += f" AND {_column(model, name)} IN ({', '.join(['%s'] * len(value))})"
            params += [_value(model, name, item) for item in value]
        else:
            conditions += f" AND {_column(model, name)} = %s"
            params.append(_value(model, name, value))
    sql = f"UPDATE {_table(model)} SET {assignments} WHERE {_column(model, 'id')} = %s{conditions}"  # noqa: S608
    with connection.cursor() as cursor:
        _execute(cursor, sql, params)
        return cursor.rowcount


def update_operation(operation_id: Any, changes: dict[str, Any], **where: Any) -> int:
    """UPDATE the operation's fields to `changes` where each of `where` holds (see _update)."""
    return _update(Operation, operation_id, changes, where)


def update_server(server_id: Any, changes: dict[str, Any], **where: Any) -> int:
    """UPDATE the server's fields to `changes` where each of `where` holds (see _update)."""
    return _update(Server, server_id, changes, where)


@functools.cache
def _addresses_statement() -> tuple[str, _Columns, _Columns]:
    address, pool = _Columns(IPAddress, "a"), _Columns(IPPool, "p")
    sql = (
        f"SELECT {address.sql}, {pool.sql} FROM {_table(IPAddress)} a "  # noqa: S608 (names from the models)
        f"JOIN {_table(IPPool)} p ON p.{_column(IPPool, 'id')} = a.{_column(IPAddress, 'pool')} "
        f"WHERE a.{_column(IPAddress, 'consumer_uuid')} = %s"
    )
    return sql, address, pool


def read_addresses(server: Server) -> list[IPAddress]:
    """The server's address rows with their pools, in the order Server.ip_addresses gives them, kept as its
    cached value (read in one statement instead of the ORM's query)."""
    sql, address, pool = _addresses_statement()
    with connection.cursor() as cursor:
        _execute(cursor, sql, [_value(IPAddress, "consumer_uuid", server.pk)])
        rows = cursor.fetchall()
    addresses = []
    for row in rows:
        item = address.build(row)
        IPAddress.pool.field.set_cached_value(item, pool.build(row, address.width))
        addresses.append(item)
    addresses.sort(key=address_order)
    server.__dict__["ip_addresses"] = addresses
    return addresses
