"""Host onboarding, probing, capacity and claims. These functions own their transactions."""

from __future__ import annotations

import uuid as uuid_module
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from . import probe as probing
from .connection import HypervisorError
from .models import Allocation, Host, Region

SUPPORTED_SCHEMES = {"qemu", "qemu+ssh", "qemu+tls", "qemu+tcp", "qemu+unix", "test"}


class NoCapacity(Exception):
    """No host in the region can hold the request."""


@dataclass(frozen=True)
class Resources:
    vcpus: int
    memory_mib: int
    disk_gib: int


def validate_uri(uri: str) -> str:
    uri = uri.strip()
    scheme = urlsplit(uri).scheme
    if scheme not in SUPPORTED_SCHEMES:
        raise ValidationError(
            _(
                "Unsupported libvirt URI %(uri)s: use qemu:///system, qemu+ssh://user@host/system, "
                "qemu+tls://host/system or test:///…"
            ),
            params={"uri": uri},
            code="invalid_uri",
        )
    return uri


def register_host(name: str, uri: str, region: Region) -> Host:
    """Record a new host (state new). The caller starts probing."""
    uri = validate_uri(uri)
    name = name.strip()
    if not name:
        raise ValidationError(_("A host needs a name."), code="invalid_name")
    if Host.objects.filter(name=name).exists():
        raise ValidationError(
            _("A host named %(name)s exists already."), params={"name": name}, code="duplicate"
        )
    return Host.objects.create(name=name, uri=uri, region=region)


def probe_host(host_id: int) -> Host:
    """Probe the host and record what it is: state ready, or error with a reason. Never raises for libvirt."""
    Host.objects.filter(pk=host_id).update(state=Host.State.PROBING)
    host = Host.objects.get(pk=host_id)
    try:
        result = probing.probe(host)
    except HypervisorError as exc:
        Host.objects.filter(pk=host_id).update(
            state=Host.State.ERROR, status_reason=exc.message, last_probed_at=timezone.now()
        )
    else:
        Host.objects.filter(pk=host_id).update(
            state=Host.State.READY,
            status_reason="; ".join(result.warnings),
            domain_type=result.domain_type,
            arch=result.arch,
            cpu_model=result.cpu_model[:100],
            vcpus_total=result.vcpus_total,
            memory_mib_total=result.memory_mib_total,
            memory_mib_free=result.memory_mib_free,
            disk_gib_total=result.disk_gib_total,
            libvirt_version=result.libvirt_version,
            hypervisor_version=result.hypervisor_version[:80],
            last_probed_at=timezone.now(),
        )
    host.refresh_from_db()
    return host


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


def _free(host: Host) -> Resources:
    capacity = host.capacity
    return Resources(
        vcpus=capacity["vcpus"] - host.used_vcpus,
        memory_mib=capacity["memory_mib"] - host.used_memory_mib,
        disk_gib=capacity["disk_gib"] - host.used_disk_gib,
    )


def fits(host: Host, need: Resources) -> bool:
    free = _free(host)
    return free.vcpus >= need.vcpus and free.memory_mib >= need.memory_mib and free.disk_gib >= need.disk_gib


def schedulable_hosts(region: Region | None = None) -> QuerySet[Host]:
    hosts = Host.objects.filter(enabled=True, maintenance=False, state=Host.State.READY)
    if region is not None:
        hosts = hosts.filter(region=region)
    return hosts


def candidates(region: Region, need: Resources) -> list[Host]:
    """Hosts that pass the filters, best first (spread: most free memory)."""
    hosts = [h for h in with_usage(schedulable_hosts(region)) if fits(h, need)]
    hosts.sort(key=lambda h: _free(h).memory_mib, reverse=True)
    return hosts


def regions_that_fit(need: Resources) -> set[int]:
    """Ids of the regions where at least one host could take `need` now."""
    return {h.region_id for h in with_usage(schedulable_hosts()) if fits(h, need)}


def claim(consumer_uuid: uuid_module.UUID, region: Region, need: Resources) -> Host:
    """Place and claim resources for a consumer on a host of the region. Raises NoCapacity.

    Each attempt locks the chosen host row, recomputes its usage and inserts the allocation; a host
    that filled up meanwhile is skipped for the next one.
    """
    for candidate in candidates(region, need):
        with transaction.atomic():
            host = Host.objects.select_for_update().filter(pk=candidate.pk).first()
            if host is None or not host.schedulable:
                continue
            host = with_usage(Host.objects.filter(pk=host.pk)).get()
            if not fits(host, need):
                continue
            Allocation.objects.create(
                consumer_uuid=consumer_uuid,
                host=host,
                vcpus=need.vcpus,
                memory_mib=need.memory_mib,
                disk_gib=need.disk_gib,
            )
            return host
    raise NoCapacity(_("Out of capacity in this region: no host can take this plan now."))


def release(consumer_uuid: uuid_module.UUID) -> None:
    Allocation.objects.filter(consumer_uuid=consumer_uuid).delete()
