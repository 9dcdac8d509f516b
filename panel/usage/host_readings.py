"""The statements that store one host's readings (`metering.meter_host`): a constant handful per host,
whatever the number of its servers, each row passed in arrays (`unnest`), not as a model instance.

Every function runs in the caller's transaction: `servers` locks the servers' last readings (FOR UPDATE)
until it ends, so two meterings of one server are applied one after the other, never both against the same
reading; the samples and periods are added to by atomic increments (INSERT ... ON CONFLICT DO UPDATE,
UPDATE ... SET x = x + d), right however many writers there are.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from django.db import connection

from panel.servers.states import Status

# The counters a reading holds, in the order of MeterState's and UsageSample's columns.
FIELDS = ("rx_bytes", "tx_bytes", "cpu_ns", "rd_bytes", "wr_bytes")
Deltas = tuple[int, int, int, int, int]


class Metered(NamedTuple):
    """A server of the host with a running domain, and what the panel knows of it for metering."""

    server_id: str
    created_at: datetime
    transfer_gib: int | None
    transfer_direction: str
    # A period of the server's is throttled or suspended (this one or an earlier one): enforcement looks.
    restricted: bool
    # The last reading stored (None: this is the first): the domain's id, its counters, when it was read.
    domain_id: int | None
    counters: Deltas | None
    read_at: datetime | None


class Period(NamedTuple):
    """A server's current transfer period after the increments: its counters, or None where it has none."""

    in_bytes: int
    out_bytes: int
    extra_bytes: int


_SERVERS = f"""
WITH last AS MATERIALIZED (
    SELECT m.* FROM panel_meterstate m
    JOIN panel_server s ON s.id = m.server_id AND s.host_id = %(host)s AND s.status <> %(deleted)s
    WHERE m.server_id = ANY(%(ids)s::uuid[])
    FOR UPDATE OF m
)
SELECT s.id::text, s.created_at, p.transfer_gib, p.transfer_direction,
       EXISTS (
           SELECT 1 FROM panel_transferperiod t WHERE t.server_id = s.id AND (t.throttled OR t.suspended)
       ),
       last.domain_id, {", ".join(f"last.{field}" for field in FIELDS)}, last.read_at
FROM panel_server s
JOIN billing_plan p ON p.id = s.plan_id
LEFT JOIN last ON last.server_id = s.id
WHERE s.host_id = %(host)s AND s.status <> %(deleted)s AND s.id = ANY(%(ids)s::uuid[])
"""


def servers(host_id: int, server_ids: Sequence[str]) -> list[Metered]:
    """The host's live servers among these domains (UUID strings), their last readings locked."""
    with connection.cursor() as cursor:
        cursor.execute(_SERVERS, {"host": host_id, "deleted": Status.DELETED, "ids": list(server_ids)})
        rows = cursor.fetchall()
    return [
        Metered(
            row[0], row[1], row[2], row[3], row[4], row[5], None if row[5] is None else row[6:11], row[11]
        )
        for row in rows
    ]


_SAVE_READINGS = f"""
INSERT INTO panel_meterstate (server_id, domain_id, {", ".join(FIELDS)}, read_at)
SELECT r.*, %s FROM unnest(%s::uuid[], %s::bigint[], {", ".join(["%s::bigint[]"] * len(FIELDS))}) AS r
ON CONFLICT (server_id) DO UPDATE SET domain_id = EXCLUDED.domain_id,
    {", ".join(f"{field} = EXCLUDED.{field}" for field in FIELDS)}, read_at = EXCLUDED.read_at
"""


def save_readings(readings: Sequence[tuple[str, int, Deltas]], read_at: datetime) -> None:
    """Store each server's reading (server id, domain id, counters) as its last one, in one statement."""
    if not readings:
        return
    ids, domain_ids, counters = zip(*readings, strict=True)
    columns = [list(column) for column in zip(*counters, strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(_SAVE_READINGS, [read_at, list(ids), list(domain_ids), *columns])


_ADD_SAMPLES = f"""
INSERT INTO panel_usagesample (server_id, resolution, start, {", ".join(FIELDS)}, vcpus)
SELECT r.server_id, %s, %s, {", ".join(f"r.{field}" for field in FIELDS)}, r.vcpus
FROM unnest(%s::uuid[], {", ".join(["%s::bigint[]"] * len(FIELDS))}, %s::integer[])
    AS r(server_id, {", ".join(FIELDS)}, vcpus)
ON CONFLICT (server_id, resolution, start) DO UPDATE SET
    {", ".join(f"{field} = panel_usagesample.{field} + EXCLUDED.{field}" for field in FIELDS)}
"""


def add_samples(increments: Sequence[tuple[str, Deltas, int]], resolution: int, start: datetime) -> None:
    """Add each server's deltas (server id, deltas, vCPUs) to its sample of the bucket, made where
    missing (with those vCPUs), in one statement."""
    if not increments:
        return
    ids, deltas, vcpus = zip(*increments, strict=True)
    columns = [list(column) for column in zip(*deltas, strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(_ADD_SAMPLES, [resolution, start, list(ids), *columns, list(vcpus)])


_ADD_TO_PERIODS = """
WITH d AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(in)s::bigint[], %(out)s::bigint[])
        AS d(server_id, in_bytes, out_bytes)
), added AS (
    UPDATE panel_transferperiod t
    SET in_bytes = t.in_bytes + d.in_bytes, out_bytes = t.out_bytes + d.out_bytes
    FROM d
    WHERE t.server_id = d.server_id AND t.start <= %(at)s AND t."end" > %(at)s
      AND (d.in_bytes <> 0 OR d.out_bytes <> 0)
    RETURNING t.server_id, t.in_bytes, t.out_bytes, t.extra_bytes
)
SELECT d.server_id::text, COALESCE(a.in_bytes, c.in_bytes), COALESCE(a.out_bytes, c.out_bytes),
       COALESCE(a.extra_bytes, c.extra_bytes)
FROM d
LEFT JOIN added a ON a.server_id = d.server_id
LEFT JOIN panel_transferperiod c ON c.server_id = d.server_id AND c.start <= %(at)s AND c."end" > %(at)s
"""


def add_to_periods(traffic: Sequence[tuple[str, int, int]], at: datetime) -> dict[str, Period | None]:
    """Add each server's traffic (server id, inbound and outbound bytes) to its current period (the one
    holding `at`), in one statement. Returns every server's period as it is now; None for a server that
    has no current period yet (`add_new_periods` makes it)."""
    if not traffic:
        return {}
    ids, inbound, outbound = zip(*traffic, strict=True)
    with connection.cursor() as cursor:
        cursor.execute(
            _ADD_TO_PERIODS, {"ids": list(ids), "in": list(inbound), "out": list(outbound), "at": at}
        )
        rows = cursor.fetchall()
    return {row[0]: None if row[1] is None else Period(row[1], row[2], row[3]) for row in rows}


_ADD_NEW_PERIODS = """
INSERT INTO panel_transferperiod
    (server_id, start, "end", in_bytes, out_bytes, extra_bytes, notified_percent, throttled, suspended)
SELECT r.*, 0, 0, false, false
FROM unnest(%s::uuid[], %s::timestamptz[], %s::timestamptz[], %s::bigint[], %s::bigint[])
    AS r(server_id, start, "end", in_bytes, out_bytes)
ON CONFLICT (server_id, start) DO UPDATE SET in_bytes = panel_transferperiod.in_bytes + EXCLUDED.in_bytes,
    out_bytes = panel_transferperiod.out_bytes + EXCLUDED.out_bytes
RETURNING server_id::text, in_bytes, out_bytes, extra_bytes
"""


def add_new_periods(rows: Sequence[tuple[str, datetime, datetime, int, int]]) -> dict[str, Period]:
    """Make the periods (server id, start, end, inbound and outbound bytes) with that traffic, or add it to
    them where another writer made them meanwhile. Returns each one's counters."""
    if not rows:
        return {}
    columns = [list(column) for column in zip(*rows, strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(_ADD_NEW_PERIODS, columns)
        return {row[0]: Period(row[1], row[2], row[3]) for row in cursor.fetchall()}
