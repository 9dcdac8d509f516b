"""What customers can order: plans, images and regions, with availability from host capacity."""

from __future__ import annotations

from billing.models import Plan
from hypervisor import placement
from hypervisor.models import Allocation, Image, Region


def plan_resources(plan: Plan) -> placement.Resources:
    return placement.Resources(plan.vcpus, plan.memory_mib, plan.disk_gib)


def available_plans(region: Region | None = None) -> set[int]:
    """Ids of plans on sale that some host (in the region, if given) can take now (one query)."""
    plans = placement.plans_that_fit(Plan.objects.filter(is_active=True), region)
    return set(plans.filter(fits=True).values_list("pk", flat=True))


def resize_room(consumer_uuid) -> placement.Resources | None:
    """What the server's host could give the server in all: what it has free plus what the server holds
    (None when the server holds nothing on a host), in one query. A resize claims the difference on the same
    host."""
    allocation = Allocation.objects.filter(consumer_uuid=consumer_uuid).select_related("host").first()
    if allocation is None:
        return None
    room = placement.free(allocation.host)
    return placement.Resources(
        room.vcpus + allocation.vcpus,
        room.memory_mib + allocation.memory_mib,
        room.disk_gib + allocation.disk_gib,
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
