"""Claims: a consumer's allocation of a host's resources, placed, resized and released.

A claim is one statement: it picks the best host of the region with room, locks its row and inserts the
allocation; the allocation trigger adds it to the host's usage counters in the same transaction. Concurrent
claims never exceed a host's capacity: the host's row stays locked until the claim's transaction ends, and
Postgres checks the room again on the row's latest version when it takes the lock. The cost does not depend
on how many servers the region has.
"""

from __future__ import annotations

import functools
import uuid as uuid_module

from django.conf import settings
from django.db import connection, transaction
from django.utils.translation import gettext as _

import prepared_statements

from .models import Allocation, Host, Region
from .placement import NoCapacity, Resources, fits, ranked, schedulable_hosts

# The host columns a claim answers with (the rest load on first use), in the model's order (Model.from_db
# takes the values of the fields it is given in that order).
CLAIMED_FIELDS = tuple(
    field.attname
    for field in Host._meta.concrete_fields
    if field.attname in {"id", "name", "uri", "region_id", "storage_pool"}
)


def claim(consumer_uuid: uuid_module.UUID, region: Region, need: Resources) -> Host:
    """Place and claim resources for a consumer on a host of the region. Raises NoCapacity.

    The first attempt is one statement over the region's hosts that passes over those whose row another
    claim holds (SKIP LOCKED), so that concurrent orders spread over the best hosts instead of queueing on
    one. Only when every host with room was busy does a claim wait, for one host at a time in its ranking:
    each attempt is a savepoint that is rolled back when the host turned out full (releasing its row), so a
    waiting claim holds no other host's row and two claims never deadlock.
    """
    host = _claim_best(consumer_uuid, region, need, None)
    if host is None:
        raise NoCapacity(_("Out of capacity in this region: no host can take this plan now."))
    return host


def claim_target(
    consumer_uuid: uuid_module.UUID,
    region: Region,
    need: Resources,
    *,
    host: Host | None = None,
    exclude_host_id: int | None,
) -> Host:
    """Claim `need` for a consumer that already holds an allocation on the host `exclude_host_id` (a server
    about to move: from here on it holds one on both hosts, until the switch-over releases the source's or
    a rollback this one, `release_on`). On `host` when given (it must be another schedulable host of the
    region with room: its row is waited for like a claim's), otherwise on the best other host of the region
    as `claim` chooses. Raises NoCapacity and claims nothing otherwise."""
    if host is not None:
        if host.pk == exclude_host_id or host.region_id != region.pk:
            raise NoCapacity(_("The host %(host)s cannot take this server.") % {"host": host.name})
        claimed = _claim_on(consumer_uuid, need, region.pk, host.pk)
        if claimed is None:
            raise NoCapacity(_("The host %(host)s cannot take this server now.") % {"host": host.name})
        return claimed
    claimed = _claim_best(consumer_uuid, region, need, exclude_host_id)
    if claimed is None:
        raise NoCapacity(_("No other host in this region can take this server now."))
    return claimed


def _claim_best(
    consumer_uuid: uuid_module.UUID, region: Region, need: Resources, exclude_host_id: int | None
) -> Host | None:
    """Claim on the best schedulable host of the region with room (but `exclude_host_id`): one statement
    that passes over busy hosts, then, when all were busy, one host at a time in a savepoint. None when no
    host could take it."""
    host = _claim_on(consumer_uuid, need, region.pk, None, exclude_host_id)
    if host is not None:
        return host
    ranking = ranked(schedulable_hosts(region), need)
    if exclude_host_id is not None:
        ranking = ranking.exclude(pk=exclude_host_id)
    for candidate in list(ranking.values_list("pk", flat=True)):
        try:
            with transaction.atomic():
                host = _claim_on(consumer_uuid, need, region.pk, candidate)
                if host is None:
                    raise _HostFull
                return host
        except _HostFull:
            continue
    return None


class _HostFull(Exception):
    """The candidate host cannot take the claim after all (raised to roll its savepoint back)."""


@functools.cache
def _claim_sql(spread: bool, one_host: bool, other_host: bool = False) -> str:
    """The claim's statement: pick the best schedulable host of the region with room (placement.ranked, on
    the partial index host_placement), lock it (Postgres checks the room again on the row's latest version
    once the lock is granted), insert the allocation there, answer the host. Written out (the hot path of
    every order): ORM compilation cost more than the statement.

    `one_host`: only that host, waiting for its row; otherwise the best one nobody holds (SKIP LOCKED), and
    with `other_host`, not the host given (a moving server's own). A consumer holds at most one allocation
    per host: a claim on a host it holds already inserts nothing (and answers no host)."""
    host, allocation = Host._meta.db_table, Allocation._meta.db_table
    order = "free_memory_mib DESC, id ASC" if spread else "free_memory_mib ASC, id DESC"
    columns = ", ".join(f'h."{Host._meta.get_field(name).column}"' for name in CLAIMED_FIELDS)
    return (
        f'WITH chosen AS (SELECT id FROM "{host}" '
        f"WHERE enabled AND NOT maintenance AND state = '{Host.State.READY.value}' AND region_id = %s "
        "AND free_vcpus >= %s AND free_memory_mib >= %s AND free_disk_gib >= %s"
        + (" AND id = %s" if one_host else "")
        + (" AND id <> %s" if other_host else "")
        + f" ORDER BY {order} LIMIT 1 FOR NO KEY UPDATE"
        + ("" if one_host else " SKIP LOCKED")
        + f'), placed AS (INSERT INTO "{allocation}" '
        "(consumer_uuid, host_id, vcpus, memory_mib, disk_gib, created_at) "
        "SELECT %s, chosen.id, %s, %s, %s, now() FROM chosen "
        "ON CONFLICT (consumer_uuid, host_id) DO NOTHING RETURNING host_id) "
        f'SELECT {columns} FROM "{host}" h JOIN placed ON placed.host_id = h.id'
    )


def _claim_on(
    consumer_uuid: uuid_module.UUID,
    need: Resources,
    region_id: int,
    host_id: int | None,
    exclude_host_id: int | None = None,
) -> Host | None:
    """Claim `need` on the best host of the region nobody holds (host_id None; never `exclude_host_id`), or
    on that host once its row is free. None when no host was taken."""
    if connection.vendor != "postgresql":
        return _claim_serialised(consumer_uuid, need, region_id, host_id, exclude_host_id)
    other = host_id is None and exclude_host_id is not None
    sql = _claim_sql(settings.PLACEMENT_WEIGHER != "pack", host_id is not None, other)
    room = (need.vcpus, need.memory_mib, need.disk_gib)
    pick = (region_id, *room) if host_id is None else (region_id, *room, host_id)
    if other:
        pick = (*pick, exclude_host_id)
    with connection.cursor() as cursor:
        prepared_statements.execute(cursor, sql, (*pick, consumer_uuid, *room))  # prepared once per session
        row = cursor.fetchone()
    return None if row is None else Host.from_db(connection.alias, CLAIMED_FIELDS, row)


def _claim_serialised(
    consumer_uuid: uuid_module.UUID,
    need: Resources,
    region_id: int,
    host_id: int | None,
    exclude_host_id: int | None = None,
) -> Host | None:
    """The demo's SQLite (no row locks; its writers take turns on the whole database): the best host with
    room, then the allocation."""
    hosts = ranked(schedulable_hosts().filter(region_id=region_id), need)
    if host_id is not None:
        hosts = hosts.filter(pk=host_id)
    elif exclude_host_id is not None:
        hosts = hosts.exclude(pk=exclude_host_id)
    host = hosts.only(*CLAIMED_FIELDS).first()
    if host is None or Allocation.objects.filter(consumer_uuid=consumer_uuid, host=host).exists():
        return None
    Allocation.objects.create(
        consumer_uuid=consumer_uuid,
        host=host,
        vcpus=need.vcpus,
        memory_mib=need.memory_mib,
        disk_gib=need.disk_gib,
    )
    return host


def resize_claim(consumer_uuid: uuid_module.UUID, need: Resources) -> Allocation:
    """Change a consumer's allocation to `need` on the host it is on, if the host has room for the
    difference (its row locked like a claim's). Raises NoCapacity and changes nothing otherwise. (A consumer
    holds two allocations only while it moves, when no resize can start: the server has a task.)"""
    with transaction.atomic():
        allocation = Allocation.objects.select_for_update().get(consumer_uuid=consumer_uuid)
        host = Host.objects.select_for_update().get(pk=allocation.host_id)
        # The host's usage without this consumer, plus what it will hold.
        host.used_vcpus -= allocation.vcpus
        host.used_memory_mib -= allocation.memory_mib
        host.used_disk_gib -= allocation.disk_gib
        if not fits(host, need):
            raise NoCapacity(_("The host cannot take the new size."))
        allocation.vcpus = need.vcpus
        allocation.memory_mib = need.memory_mib
        allocation.disk_gib = need.disk_gib
        allocation.save(update_fields=["vcpus", "memory_mib", "disk_gib"])
    return allocation


def give_back(consumer_uuid: uuid_module.UUID, held: Resources) -> None:
    """The consumer's allocation goes back to what it `held` before (a failed resize): smaller, so no room
    is checked. Holding nothing, nothing changes."""
    Allocation.objects.filter(consumer_uuid=consumer_uuid).update(
        vcpus=held.vcpus, memory_mib=held.memory_mib, disk_gib=held.disk_gib
    )


def release(consumer_uuid: uuid_module.UUID) -> None:
    """Drop the consumer's allocations (releasing what holds nothing is harmless). The host's row is locked
    by the trigger's counter update: call it before any lock that comes later in the lock order."""
    Allocation.objects.filter(consumer_uuid=consumer_uuid).delete()


def release_on(consumer_uuid: uuid_module.UUID, host_id: int) -> int:
    """Drop the consumer's allocation on one host (a moved server's on the host it left, or on the host it
    did not reach); its others stay. Idempotent; the host's row is locked as by `release`. Returns how many
    were dropped (0 or 1)."""
    deleted, _rows = Allocation.objects.filter(consumer_uuid=consumer_uuid, host_id=host_id).delete()
    return deleted
