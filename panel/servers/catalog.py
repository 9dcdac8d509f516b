"""What customers can order: plans, images and regions, with availability from host capacity."""

from __future__ import annotations

from django.db.models import Subquery

from billing.models import Plan
from hypervisor import placement
from hypervisor.models import Allocation, Host, Image, Region


def plan_resources(plan: Plan) -> placement.Resources:
    return placement.Resources(plan.vcpus, plan.memory_mib, plan.disk_gib)


def available_plans(region: Region | None = None) -> set[int]:
    """Ids of plans on sale that some host (in the region, if given) can take now."""
    hosts = list(placement.with_usage(placement.schedulable_hosts(region)))
    return {
        plan.pk
        for plan in Plan.objects.filter(is_active=True)
        if any(placement.fits(host, plan_resources(plan)) for host in hosts)
    }


def resize_room(consumer_uuid) -> placement.Resources | None:
    """What the server's host could give the server in all: what it has free plus what the server holds
    (None when the server holds nothing on a host), in one query. A resize claims the difference on the same
    host."""
    own = Allocation.objects.filter(consumer_uuid=consumer_uuid)
    host = (
        placement.with_usage(
            Host.objects.filter(pk=Subquery(own.values("host_id")[:1])).only(*placement.PLACEMENT_FIELDS)
        )
        .annotate(
            own_vcpus=Subquery(own.values("vcpus")[:1]),
            own_memory_mib=Subquery(own.values("memory_mib")[:1]),
            own_disk_gib=Subquery(own.values("disk_gib")[:1]),
        )
        .first()
    )
    if host is None:
        return None
    room = placement.free(host)
    return placement.Resources(
        room.vcpus + host.own_vcpus, room.memory_mib + host.own_memory_mib, room.disk_gib + host.own_disk_gib
    )


def open_regions():
    return Region.objects.filter(is_active=True)


def active_images():
    """The operating systems customers order and rebuild with (not installer ISOs or the rescue system)."""
    return Image.objects.filter(is_active=True, purpose=Image.Purpose.OS)


def active_isos():
    """The installer ISOs customers can attach to their servers."""
    return Image.objects.filter(is_active=True, purpose=Image.Purpose.ISO)


def offered_images() -> list[Image]:
    """Every available image (OS images, ISOs, rescue systems) in one query: the server page uses them all."""
    return list(Image.objects.filter(is_active=True))
