"""The statements a worker asks for every operation it runs (and every create), written by hand: the
operation locked with its server, host, plan and image, the host's heavy operations ahead of it, the lease
and outcome writes, the server's addresses and firewall. Compiling the ORM's queries cost far more CPU than
Postgres spends answering them (about 4 ms for the locked operation with its related rows, against 0.3 ms
here). Writes that go together (the lease and a create's server; the outcome and the server's task) are one
statement on Postgres (data-modifying CTEs): a round trip costs the worker and Postgres more than the write.

The column lists come from the models (a new field is read too) and are built once per process; values are
converted as the ORM converts them (the backend's converters, then the field's), and parameters are
prepared by their fields, so the statements run on Postgres and on the demo's SQLite alike. They send no
model signals: the ORM's `update()` they replace sends none either.

On Postgres each statement is a prepared statement of the database session (PREPARE once per connection,
then EXECUTE: prepared_statements): planning the operation's five-table join cost Postgres about 1 ms of
CPU at every execution, more than running it. A prepared statement outlives a rolled-back transaction and
ends with its session; the panel talks to Postgres directly, not through a pooler that would share sessions.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Field, Model
from django.utils import timezone

from billing.models import Plan
from hypervisor.models import Host, Image, IPAddress, IPPool
from panel.models import Firewall, Operation, Server
from panel.raw_rows import Columns as _Columns
from panel.servers.models import address_order
from prepared_statements import execute as _execute


def _table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _column(model: type[Model], name: str) -> str:
    return connection.ops.quote_name(model._meta.get_field(name).column)


def _value(model: type[Model], name: str, value: Any) -> Any:
    """The parameter for a value of the field as the ORM would send it (a UUID's hex on SQLite, a naive UTC
    datetime there, JSON adapted for Postgres)."""
    return model._meta.get_field(name).get_db_prep_save(value, connection)


@functools.cache
def _lock_statement(turn_key: int | None, turn_types: int) -> tuple[str, tuple[_Columns, ...]]:
    parts = (
        _Columns(Operation, "o"),
        _Columns(Server, "s"),
        _Columns(Host, "h", exclude=("inventory",)),  # the probe's facts, large and not needed here
        _Columns(Plan, "p"),
        _Columns(Image, "i"),
    )
    server_fk, pk = _column(Operation, "server"), _column(Server, "id")
    now = ", clock_timestamp()" if connection.vendor == "postgresql" else ""
    if turn_key is not None and connection.vendor == "postgresql":
        # The host's turn lock (an advisory lock held to the end of the transaction) for operations of
        # `turn_types` on a host, taken by this statement, before the clock is read.
        types = ", ".join(["%s"] * turn_types)
        host = f"s.{_column(Server, 'host')}"
        now = (
            f", CASE WHEN o.{_column(Operation, 'type')} IN ({types}) AND {host} IS NOT NULL "
            f"THEN pg_advisory_xact_lock({int(turn_key)}, CAST({host} AS integer)) END{now}"
        )
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


def lock(
    operation_id: str, turn: tuple[int, Sequence[str]] | None = None
) -> tuple[Operation, datetime] | None:
    """In the caller's transaction, one statement: the operation's row locked (only it), with its server and
    the server's host, plan and image; and the database's clock (leases.db_now), read with the row. None
    when there is no such operation.

    `turn`, (key, types): on Postgres an operation of one of these types on a host also takes the host's
    turn lock, `pg_advisory_xact_lock(key, host id)`, held to the end of the caller's transaction (so that
    its next statements see what the turn's earlier holders committed). Elsewhere nothing is taken.

    The clock is read as the row is: after the lock when the row changed while this statement waited for it
    (Postgres reads the row again), else at most the wait earlier. An earlier clock only makes a lease look
    alive a little longer: a lease is never taken before it ran out."""
    key, types = turn if turn is not None else (None, ())
    sql, (operation, server, host, plan, image) = _lock_statement(key, len(types))
    params = [_value(Operation, "type", name) for name in types] if connection.vendor == "postgresql" else []
    with connection.cursor() as cursor:
        _execute(cursor, sql, [*params, _value(Operation, "id", operation_id)])
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
        f"SELECT COUNT(*) AS n FROM (SELECT 1 FROM {_table(Operation)} o "  # noqa: S608 (names from the models)
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
    params = _ahead_params(operation, host_id, types, statuses, now, upto)
    with connection.cursor() as cursor:
        _execute(cursor, _ahead_statement(len(types), len(statuses)), params)
        return cursor.fetchone()[0]


def _ahead_params(
    operation: Operation, host_id: int, types: list[str], statuses: list[str], now: datetime, upto: int
) -> list:
    at = _value(Operation, "deadline", now)
    return [
        host_id,
        *types,
        *statuses,
        at,
        _value(Operation, "id", operation.pk),
        at,
        _value(Operation, "created_at", operation.created_at),
        upto,
    ]


def _shape(where: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    """What a statement's WHERE depends on: each condition's field and kind (-1: equal, -2: IS NULL, n: IN of
    n values)."""
    return tuple(
        (name, -2 if value is None else len(value) if isinstance(value, tuple) else -1)
        for name, value in where.items()
    )


@functools.cache
def _update_statement(
    model: type[Model], names: tuple[str, ...], shape: tuple[tuple[str, int], ...]
) -> tuple[str, tuple[Field, ...]]:
    """The UPDATE of the row's fields `names` where `shape` holds (see _shape), and the fields its parameters
    are prepared by (the changes, the primary key, then the conditions' values): compiled once per shape."""
    meta = model._meta
    changed = [meta.get_field(name) for name in names]
    assignments = ", ".join(f"{_column(model, name)} = %s" for name in names)
    fields = [*changed, meta.get_field("id")]
    conditions = ""
    for name, size in shape:
        field = meta.get_field(name)
        if size == -2:
            conditions += f" AND {_column(model, name)} IS NULL"
        elif size >= 0:
            conditions += f" AND {_column(model, name)} IN ({', '.join(['%s'] * size)})"
            fields += [field] * size
        else:
            conditions += f" AND {_column(model, name)} = %s"
            fields.append(field)
    sql = f"UPDATE {_table(model)} SET {assignments} WHERE {_column(model, 'id')} = %s{conditions}"  # noqa: S608
    return sql, tuple(fields)


def _update_params(
    fields: tuple[Field, ...], pk: Any, changes: dict[str, Any], where: dict[str, Any]
) -> list:
    """The parameters of an _update_statement (a model instance among the changes stands for its key)."""
    values = [getattr(value, "pk", value) for value in changes.values()]
    values.append(pk)
    for value in where.values():
        if isinstance(value, tuple):
            values += value
        elif value is not None:
            values.append(value)
    return [field.get_db_prep_save(value, connection) for field, value in zip(fields, values, strict=True)]


def _update(model: type[Model], pk: Any, changes: dict[str, Any], where: dict[str, Any]) -> int:
    """UPDATE the row's fields to `changes` (field: value; a model instance stands for its primary key)
    where each of `where` holds (field: value; None: IS NULL; a tuple: IN); the rows changed."""
    sql, fields = _update_statement(model, tuple(changes), _shape(where))
    with connection.cursor() as cursor:
        _execute(cursor, sql, _update_params(fields, pk, changes, where))
        return cursor.rowcount


def update_operation(operation_id: Any, changes: dict[str, Any], **where: Any) -> int:
    """UPDATE the operation's fields to `changes` where each of `where` holds (see _update)."""
    return _update(Operation, operation_id, changes, where)


def update_server(server_id: Any, changes: dict[str, Any], **where: Any) -> int:
    """UPDATE the server's fields to `changes` where each of `where` holds (see _update)."""
    return _update(Server, server_id, changes, where)


@functools.cache
def _both_statement(
    operation: tuple[tuple[str, ...], tuple[tuple[str, int], ...]],
    server: tuple[tuple[str, ...], tuple[tuple[str, int], ...]],
    only_if_closed: bool,
) -> tuple[str, tuple[Field, ...], tuple[Field, ...]]:
    """Postgres: the operation's UPDATE and the server's in one statement (data-modifying CTEs), the server's
    made only when the operation's changed a row (`only_if_closed`: it reads the operation's CTE, so the
    operation's row is locked first, as two statements in that order would lock them)."""
    operation_sql, operation_fields = _update_statement(Operation, *operation)
    server_sql, server_fields = _update_statement(Server, *server)
    condition = " AND EXISTS (SELECT 1 FROM changed)" if only_if_closed else ""
    sql = (
        f"WITH changed AS ({operation_sql} RETURNING 1), server_changed AS ({server_sql}{condition}) "
        "SELECT COUNT(*) FROM changed"
    )
    return sql, operation_fields, server_fields


def update_operation_and_server(
    operation_id: Any,
    changes: dict[str, Any],
    where: dict[str, Any],
    server_id: Any,
    server_changes: dict[str, Any],
    server_where: dict[str, Any],
    *,
    only_if_changed: bool,
) -> int:
    """UPDATE the operation's fields where `where` holds, then the server's where `server_where` holds (with
    `only_if_changed`, only when the operation's row changed), as one statement on Postgres: one round trip
    and no transaction of its own. Elsewhere (the demo's SQLite) two statements in one transaction. Returns
    the operation's rows changed."""
    if connection.vendor != "postgresql":
        with transaction.atomic():
            changed = _update(Operation, operation_id, changes, where)
            if changed or not only_if_changed:
                _update(Server, server_id, server_changes, server_where)
        return changed
    sql, operation_fields, server_fields = _both_statement(
        (tuple(changes), _shape(where)), (tuple(server_changes), _shape(server_where)), only_if_changed
    )
    params = _update_params(operation_fields, operation_id, changes, where)
    params += _update_params(server_fields, server_id, server_changes, server_where)
    with connection.cursor() as cursor:
        _execute(cursor, sql, params)
        return cursor.fetchone()[0]


@functools.cache
def _start_in_turn_statement(
    types: int,
    statuses: int,
    operation: tuple[tuple[str, ...], tuple[tuple[str, int], ...]],
    server: tuple[tuple[str, ...], tuple[tuple[str, int], ...]] | None,
) -> tuple[str, tuple[Field, ...], tuple[Field, ...]]:
    """Postgres: the heavy operations ahead counted, and the operation's UPDATE (then the server's) made only
    when fewer than a limit are, in one statement."""
    operation_sql, operation_fields = _update_statement(Operation, *operation)
    parts = [
        f"turn AS ({_ahead_statement(types, statuses)})",
        f"started AS ({operation_sql} AND (SELECT n FROM turn) < %s RETURNING 1)",
    ]
    server_fields: tuple[Field, ...] = ()
    if server is not None:
        server_sql, server_fields = _update_statement(Server, *server)
        parts.append(f"provisioning AS ({server_sql} AND EXISTS (SELECT 1 FROM started))")
    return f"WITH {', '.join(parts)} SELECT COUNT(*) FROM started", operation_fields, server_fields


def start_in_turn(
    operation: Operation,
    host_id: int,
    types: Iterable[str],
    statuses: Iterable[str],
    now: datetime,
    *,
    limit: int,
    changes: dict[str, Any],
    server_changes: dict[str, Any] | None = None,
    server_where: dict[str, Any] | None = None,
) -> bool:
    """When fewer than `limit` open operations of `types` on the host are ahead of this one (heavy_ahead),
    UPDATE the operation's fields to `changes` and, with `server_changes`, its server's where `server_where`
    holds; whether it did. On Postgres the count and the updates are one statement, whose snapshot is taken
    after the host's turn lock the caller holds (operation_rows.lock took it in an earlier statement);
    elsewhere (the demo's SQLite) the count and the updates are statements of the caller's transaction."""
    types, statuses = list(types), list(statuses)
    if connection.vendor != "postgresql":
        if heavy_ahead(operation, host_id, types, statuses, now, upto=limit) >= limit:
            return False
        _update(Operation, operation.pk, changes, {})
        if server_changes is not None:
            _update(Server, operation.server_id, server_changes, server_where or {})
        return True
    server = None if server_changes is None else (tuple(server_changes), _shape(server_where or {}))
    sql, operation_fields, server_fields = _start_in_turn_statement(
        len(types), len(statuses), (tuple(changes), ()), server
    )
    params = _ahead_params(operation, host_id, types, statuses, now, limit)
    params += [*_update_params(operation_fields, operation.pk, changes, {}), limit]
    if server_changes is not None:
        params += _update_params(server_fields, operation.server_id, server_changes, server_where or {})
    with connection.cursor() as cursor:
        _execute(cursor, sql, params)
        return bool(cursor.fetchone()[0])


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


@functools.cache
def _firewall_statement() -> tuple[str, _Columns]:
    firewall = _Columns(Firewall, "f")
    sql = (
        f"SELECT {firewall.sql} FROM {_table(Firewall)} f "  # noqa: S608 (names from the models)
        f"WHERE f.{_column(Firewall, 'server')} = %s"
    )
    return sql, firewall


def read_firewall(server_id: Any) -> Firewall | None:
    """The server's firewall row, or None when it has none (one prepared statement instead of the ORM's
    query, for every domain request a worker makes)."""
    sql, firewall = _firewall_statement()
    with connection.cursor() as cursor:
        _execute(cursor, sql, [_value(Firewall, "server", server_id)])
        row = cursor.fetchone()
    return None if row is None else firewall.build(row)
