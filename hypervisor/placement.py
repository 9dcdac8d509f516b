"""Placement: what a host has free, and which hosts (and regions) can take a request now, best first.

What a host's allocations hold is on its row (Host.used_vcpus, used_memory_mib, used_disk_gib, kept by the
allocation trigger), and what it has free is a column Postgres computes from it (Host.free_*), indexed for
placement, so every question here is answered from the host rows alone, whatever the number of servers.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Exists, F, OuterRef, Q, QuerySet

from .models import Host, Region


class NoCapacity(Exception):
    """No host in the region can hold the request."""


@dataclass(frozen=True)
class Resources:
    """What a consumer needs of a host (or what a host has free)."""

    vcpus: int
    memory_mib: int
    disk_gib: int


def allocated(host: Host) -> dict[str, int]:
    """What the host's allocations hold."""
    return {"vcpus": host.used_vcpus, "memory_mib": host.used_memory_mib, "disk_gib": host.used_disk_gib}


def free(host: Host) -> Resources:
    """What the host can still take: its capacity less what its allocations hold (computed here from the
    row's values, so that it also holds for a row changed in memory)."""
    capacity = host.capacity
    return Resources(
        vcpus=capacity["vcpus"] - host.used_vcpus,
        memory_mib=capacity["memory_mib"] - host.used_memory_mib,
        disk_gib=capacity["disk_gib"] - host.used_disk_gib,
    )


def fits(host: Host, need: Resources) -> bool:
    """Whether the host has room for `need`."""
    room = free(host)
    return room.vcpus >= need.vcpus and room.memory_mib >= need.memory_mib and room.disk_gib >= need.disk_gib


def room_for(vcpus, memory_mib, disk_gib) -> Q:
    """The filter of hosts with room for these amounts (numbers or OuterRef), on their generated free_*
    columns."""
    return Q(free_vcpus__gte=vcpus, free_memory_mib__gte=memory_mib, free_disk_gib__gte=disk_gib)


def schedulable_hosts(region: Region | None = None) -> QuerySet[Host]:
    """Hosts that take new servers: enabled, not in maintenance, ready (in `region` when given)."""
    hosts = Host.objects.filter(enabled=True, maintenance=False, state=Host.State.READY)
    if region is not None:
        hosts = hosts.filter(region=region)
    return hosts


def ranked(hosts: QuerySet[Host], need: Resources) -> QuerySet[Host]:
    """The hosts with room for `need`, best first: spread puts the most free memory first, pack the least
    (filling hosts up); ties go to the older host."""
    spread = settings.PLACEMENT_WEIGHER != "pack"
    order = F("free_memory_mib").desc() if spread else F("free_memory_mib").asc()
    return hosts.filter(room_for(need.vcpus, need.memory_mib, need.disk_gib)).order_by(
        order, "pk" if spread else "-pk"
    )


def candidates(region: Region, need: Resources) -> list[Host]:
    """Hosts that pass the filters (region, enabled, not in maintenance, ready, room), best first."""
    return list(ranked(schedulable_hosts(region), need))


def regions_that_fit(need: Resources) -> set[int]:
    """Ids of the regions where at least one host could take `need` now (one query)."""
    fitting = ranked(schedulable_hosts(), need).order_by().values_list("region_id", flat=True).distinct()
    return set(fitting)


def plans_that_fit(plans: QuerySet, region: Region | None = None) -> QuerySet:
    """The plans (a Plan queryset) annotated `fits`: whether some schedulable host (in the region when
    given) has room for the plan now (one query whatever the number of hosts)."""
    room = schedulable_hosts(region).filter(
        room_for(OuterRef("vcpus"), OuterRef("memory_mib"), OuterRef("disk_gib"))
    )
    return plans.annotate(fits=Exists(room))
