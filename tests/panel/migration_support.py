"""What the migration tests share: a region with two simulated hosts (libvirt's test driver: it defines and
starts domains but cannot migrate them, so a migration between them fails at the copy, after the target was
prepared) and a server made for real on the first one."""

from __future__ import annotations

from dataclasses import dataclass

from hypervisor.models import Allocation, Host, Region
from panel.models import Operation, Server, User
from panel.servers import actions
from panel.servers.states import Task
from tests import factories

MIGRATE = "/api/v1/admin/servers/{}/migrate/"


@dataclass
class World:
    region: Region
    source: Host
    target: Host
    server: Server
    catalog: dict


def two_hosts_and_a_server(owner: User, tmp_path, status: str = Server.Status.RUNNING) -> World:
    """Call inside the tests' TidySimulatedHost blocks of `source_uri(tmp_path)` and `target_uri(tmp_path)`.
    The source has more memory free, so that the server is placed there; the target is registered after."""
    region, plan, image = factories.make_catalog()
    source = factories.make_host(source_uri(tmp_path), region=region, name="source")
    factories.set_host_size(source, vcpus=8, memory_mib=16384, disk_gib=100)
    server = factories.make_real_server(owner, plan=plan, image=image, region=region, name="web1.example")
    target = factories.make_host(target_uri(tmp_path), region=region, name="target")
    factories.set_host_size(target, vcpus=8, memory_mib=8192, disk_gib=100)
    if status == Server.Status.STOPPED:
        stop = factories.run_operation(actions.request_action(server, Task.POWER_OFF, owner))
        assert stop.status == Operation.Status.SUCCEEDED, stop.error
        server.refresh_from_db()
    catalog = {"region": region, "plan": plan, "image": image, "host": source}
    return World(region, source, target, server, catalog)


def source_uri(tmp_path) -> str:
    return factories.node_uri(tmp_path, cores=8, memory_mib=16384, name="source.xml")


def target_uri(tmp_path) -> str:
    return factories.node_uri(tmp_path, cores=8, memory_mib=8192, name="target.xml")


def held(server: Server) -> dict[str, tuple[int, int, int]]:
    """The server's allocations by host name: (vCPUs, MiB, GiB)."""
    return {
        allocation.host.name: (allocation.vcpus, allocation.memory_mib, allocation.disk_gib)
        for allocation in Allocation.objects.filter(consumer_uuid=server.id).select_related("host")
    }


def used(host: Host) -> tuple[int, int, int]:
    """What the host's usage counters (kept by the allocation trigger) say it holds."""
    host.refresh_from_db()
    return host.used_vcpus, host.used_memory_mib, host.used_disk_gib
