"""The allocation audit: recompute what each host should hold from the servers, and report drift."""

from __future__ import annotations

from django.db.models import F, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils.translation import gettext as _

from hypervisor.models import USAGE_COUNTERS, Allocation, Host
from panel.models import Notice, Operation, Server
from panel.servers.operation_states import OPEN
from panel.servers.states import Task

PREFIX = "allocation-drift:"
# A server that moves holds an allocation on the host it leaves and one on the host it goes to, from the
# request to the switch-over (or the rollback): no drift while its operation is open.
MOVING = (Task.MIGRATE, Task.EVACUATE)


def audit_allocations() -> list[str]:
    """Compare every Allocation with the server it belongs to; report each difference as a Notice (and
    resolve notices whose drift is gone). Returns the messages. Nothing is changed: admins decide."""
    expected = {
        str(server.id): server
        for server in Server.objects.exclude(status=Server.Status.DELETED)
        .exclude(host__isnull=True)
        .select_related("host")
        .only("id", "name", "status", "host", "host__name", "vcpus", "memory_mib", "disk_gib")
    }
    found: dict[str, list[Allocation]] = {}
    for held in Allocation.objects.select_related("host").order_by("pk"):
        found.setdefault(str(held.consumer_uuid), []).append(held)
    moving = {
        str(pk)
        for pk in Operation.objects.filter(status__in=OPEN, type__in=MOVING).values_list(
            "server_id", flat=True
        )
    }
    problems: dict[str, str] = {}
    for key, server in expected.items():
        if key in moving:
            continue
        held = found.get(key, [])
        if len(held) > 1:
            problems[key] = _(
                "Server %(name)s (%(id)s) holds allocations on more than one host: %(hosts)s."
            ) % {
                "name": server.name,
                "id": key,
                "hosts": ", ".join(allocation.host.name for allocation in held),
            }
            continue
        allocation = held[0] if held else None
        if allocation is None and server.status == Server.Status.ERROR:
            continue  # a failed create gave its allocation back; the server waits to be deleted
        if allocation is None:
            problems[key] = _("Server %(name)s (%(id)s) holds no allocation on %(host)s.") % {
                "name": server.name,
                "id": key,
                "host": server.host.name,
            }
        elif allocation.host_id != server.host_id or (
            allocation.vcpus,
            allocation.memory_mib,
            allocation.disk_gib,
        ) != (
            server.vcpus,
            server.memory_mib,
            server.disk_gib,
        ):
            problems[key] = _(
                "Server %(name)s (%(id)s) should hold %(want)s on %(host)s "
                "but its allocation is %(have)s on %(on)s."
            ) % {
                "name": server.name,
                "id": key,
                "host": server.host.name,
                "on": allocation.host.name,
                "want": f"{server.vcpus} vCPU/{server.memory_mib} MiB/{server.disk_gib} GiB",
                "have": f"{allocation.vcpus} vCPU/{allocation.memory_mib} MiB/{allocation.disk_gib} GiB",
            }
    for key, held in found.items():
        if key not in expected:
            problems[key] = _("An allocation on %(host)s belongs to no live server (consumer %(id)s).") % {
                "host": ", ".join(allocation.host.name for allocation in held),
                "id": key,
            }
    problems.update(_counter_drift())
    for key, message in problems.items():
        Notice.report(PREFIX + key, message)
    Notice.resolve(PREFIX, keep={PREFIX + key for key in problems})
    return list(problems.values())


def _counter_drift() -> dict[str, str]:
    """Hosts whose usage counters (kept by the allocation trigger) differ from the sums of their
    allocations: placement would count wrong. Only possible when the trigger was bypassed (rows changed with
    triggers disabled). One statement, so that both sides come from one snapshot (an order committing
    between two reads is no drift)."""

    def total(column: str) -> Coalesce:
        own = Allocation.objects.filter(host=OuterRef("pk")).order_by().values("host")
        return Coalesce(Subquery(own.annotate(amount=Sum(column)).values("amount")), 0)

    hosts = (
        Host.objects.only("id", "name", *USAGE_COUNTERS)
        .annotate(want_vcpus=total("vcpus"), want_memory=total("memory_mib"), want_disk=total("disk_gib"))
        .exclude(used_vcpus=F("want_vcpus"), used_memory_mib=F("want_memory"), used_disk_gib=F("want_disk"))
    )
    problems = {}
    for host in hosts:
        want = (host.want_vcpus, host.want_memory, host.want_disk)
        have = (host.used_vcpus, host.used_memory_mib, host.used_disk_gib)
        problems[f"host-{host.pk}"] = _(
            "Host %(host)s counts %(have)s in use, but its allocations hold %(want)s."
        ) % {
            "host": host.name,
            "have": "{} vCPU/{} MiB/{} GiB".format(*have),
            "want": "{} vCPU/{} MiB/{} GiB".format(*want),
        }
    return problems
