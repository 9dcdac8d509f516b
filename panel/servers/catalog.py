"""What customers can order: plans, images and regions, with availability from host capacity."""

from __future__ import annotations

from billing.models import Plan
from hypervisor import placement
from hypervisor.models import Image, Region


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


def open_regions():
    return Region.objects.filter(is_active=True)


def active_images():
    return Image.objects.filter(is_active=True)
