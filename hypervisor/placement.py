"""Placement: what a host's allocations hold, what it has free, and which hosts (and regions) can take
a request now, best first."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import QuerySet, Sum
from django.db.models.functions import Coalesce

from .models import Host, Region


class NoCapacity(Exception):
    """No host in the region can hold the request."""


@dataclass(frozen=True)
class Resources:
    """What a consumer needs of a host (or what a host has free)."""

    vcpus: int
    memory_mib: int
    disk_gib: int


def with_usage(hosts: QuerySet[Host]) -> QuerySet[Host]:
    """Annotate hosts with what their allocations hold (used_vcpus, used_memory_mib, used_disk_gib)."""
    return hosts.annotate(
        used_vcpus=Coalesce(Sum("allocations__vcpus"), 0),
        used_memory_mib=Coalesce(Sum("allocations__memory_mib"), 0),
        used_disk_gib=Coalesce(Sum("allocations__disk_gib"), 0),
    )


def allocated(host: Host) -> dict[str, int]:
    """What the host's allocations hold, from the with_usage() annotation or one query."""
    if not hasattr(host, "used_vcpus"):
        host = with_usage(Host.objects.filter(pk=host.pk)).get()
    return {"vcpus": host.used_vcpus, "memory_mib": host.used_memory_mib, "disk_gib": host.used_disk_gib}


def free(host: Host) -> Resources:
    """What the host can still take: its capacity less what its allocations hold (from with_usage())."""
    capacity = host.capacity
    return Resources(
        vcpus=capacity["vcpus"] - host.used_vcpus,
        memory_mib=capacity["memory_mib"] - host.used_memory_mib,
        disk_gib=capacity["disk_gib"] - host.used_disk_gib,
    )


def fits(host: Host, need: Resources) -> bool:
    """Whether the host (annotated by with_usage()) has room for `need`."""
    room = free(host)
    return room.vcpus >= need.vcpus and room.memory_mib >= need.memory_mib and room.disk_gib >= need.disk_gib


def schedulable_hosts(region: Region | None = None) -> QuerySet[Host]:
    """Hosts that take new servers: enabled, not in maintenance, ready (in `region` when given)."""
    hosts = Host.objects.filter(enabled=True, maintenance=False, state=Host.State.READY)
    if region is not None:
        hosts = hosts.filter(region=region)
    return hosts


# What placement reads of a host (its capacity and whether it takes servers): not the probe's inventory.
PLACEMENT_FIELDS = (
    "id",
    "region_id",
    "state",
    "enabled",
    "maintenance",
    "vcpus_total",
    "memory_mib_total",
    "disk_gib_total",
    "reserved_vcpus",
    "reserved_memory_mib",
    "reserved_disk_gib",
    "cpu_allocation_ratio",
    "ram_allocation_ratio",
    "disk_allocation_ratio",
)


def candidates(region: Region, need: Resources) -> list[Host]:
    """Hosts that pass the filters (region, enabled, not in maintenance, ready, room), best first."""
    hosts = [
        host for host in with_usage(schedulable_hosts(region).only(*PLACEMENT_FIELDS)) if fits(host, need)
    ]
    # spread: the most free memory first; pack: the least free memory first (fill hosts up).
    hosts.sort(
        key=lambda host: (free(host).memory_mib, -host.pk), reverse=settings.PLACEMENT_WEIGHER != "pack"
    )
    return hosts


def regions_that_fit(need: Resources) -> set[int]:
    """Ids of the regions where at least one host could take `need` now."""
    hosts = with_usage(schedulable_hosts().only(*PLACEMENT_FIELDS))
    return {host.region_id for host in hosts if fits(host, need)}
