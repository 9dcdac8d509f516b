"""Claims: a consumer's allocation of a host's resources, placed, resized and released. Each claim locks
the host row it is placed on, so concurrent claims never exceed a host's capacity."""

from __future__ import annotations

import uuid as uuid_module

from django.db import transaction
from django.utils.translation import gettext as _

from .models import Allocation, Host, Region
from .placement import NoCapacity, Resources, candidates, fits, with_usage


class _HostFull(Exception):
    """The candidate host cannot take the claim after all (raised to roll its savepoint back)."""


def claim(consumer_uuid: uuid_module.UUID, region: Region, need: Resources) -> Host:
    """Place and claim resources for a consumer on a host of the region. Raises NoCapacity.

    Each attempt locks the chosen host row, recomputes its usage and inserts the allocation; a host
    that filled up meanwhile is skipped for the next one. The first pass skips hosts whose row another
    claim holds (SKIP LOCKED), so that concurrent orders spread over the best hosts instead of queueing
    on one; only when every host with room was busy does a second pass wait for them.
    """
    ranked = candidates(region, need)
    busy: list[Host] = []
    for candidate in ranked:
        host = _try_claim(consumer_uuid, candidate, need, wait=False)
        if host is _BUSY:
            busy.append(candidate)
        elif host is not None:
            return host
    for candidate in busy:
        host = _try_claim(consumer_uuid, candidate, need, wait=True)
        if host is not None:
            return host
    raise NoCapacity(_("Out of capacity in this region: no host can take this plan now."))


_BUSY = object()


def _try_claim(
    consumer_uuid: uuid_module.UUID, candidate: Host, need: Resources, wait: bool
) -> Host | object | None:
    """The claimed host, None when it cannot take the claim, or _BUSY when (not waiting) another
    transaction holds its row."""
    try:
        # A savepoint per attempt: rolling it back when the host is full releases that host's row
        # lock at once, so two orders passing over hosts in opposite orders cannot deadlock.
        with transaction.atomic():
            locked = Host.objects.select_for_update(skip_locked=not wait).filter(pk=candidate.pk)
            if not locked.values_list("pk", flat=True):
                if not wait and Host.objects.filter(pk=candidate.pk).exists():
                    return _BUSY
                return None
            # Usage read after the lock was granted (a statement of its own: it sees the allocations
            # committed by whoever held the lock before).
            host = with_usage(Host.objects.filter(pk=candidate.pk).defer("inventory")).get()
            if not host.schedulable or not fits(host, need):
                raise _HostFull
            Allocation.objects.create(
                consumer_uuid=consumer_uuid,
                host=host,
                vcpus=need.vcpus,
                memory_mib=need.memory_mib,
                disk_gib=need.disk_gib,
            )
            return host
    except _HostFull:
        return None


def resize_claim(consumer_uuid: uuid_module.UUID, need: Resources) -> Allocation:
    """Change a consumer's allocation to `need` on the host it is on, if the host has room for the
    difference (locked like a claim). Raises NoCapacity and changes nothing otherwise."""
    with transaction.atomic():
        allocation = Allocation.objects.select_for_update().get(consumer_uuid=consumer_uuid)
        host = Host.objects.select_for_update().get(pk=allocation.host_id)
        host = with_usage(Host.objects.filter(pk=host.pk)).get()
        # The host's usage without this consumer, plus what it will hold.
        host.used_vcpus -= allocation.vcpus
        host.used_memory_mib -= allocation.memory_mib
        host.used_disk_gib -= allocation.disk_gib
        if not fits(host, need):
            raise NoCapacity(_("The host cannot take the new size."))
        Allocation.objects.filter(pk=allocation.pk).update(
            vcpus=need.vcpus, memory_mib=need.memory_mib, disk_gib=need.disk_gib
        )
        allocation.refresh_from_db()
    return allocation


def release(consumer_uuid: uuid_module.UUID) -> None:
    """Drop the consumer's allocation (releasing what holds nothing is harmless)."""
    Allocation.objects.filter(consumer_uuid=consumer_uuid).delete()
