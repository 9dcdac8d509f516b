"""Reconcile makes the panel follow the hypervisor, the authority for power state: guests that stopped or
started behind the panel's back, domains that vanished, and domains the panel does not know."""

from __future__ import annotations

import uuid

import libvirt
import pytest

from hypervisor import connection
from hypervisor.models import Host
from hypervisor.xml.domain import Domain
from panel.models import Operation, Server
from panel.servers import actions, operations
from panel.servers.reconcile import reconcile_host

pytestmark = pytest.mark.django_db


@pytest.fixture
def conn(catalog):
    """The simulated host's libvirt connection (the same one the driver uses); new domains and volumes are
    removed after the test, since the simulated host outlives it."""
    conn = connection.connection(catalog["host"].uri)
    before = {domain.UUIDString() for domain in conn.listAllDomains()}
    pool = conn.storagePoolLookupByName(catalog["host"].storage_pool)
    volumes_before = set(pool.listVolumes())
    yield conn
    for name in set(pool.listVolumes()) - volumes_before:
        pool.storageVolLookupByName(name).delete(0)
    for domain in conn.listAllDomains():
        if domain.UUIDString() in before:
            continue
        if domain.isActive():
            domain.destroy()
        if domain.isPersistent():
            domain.undefine()


def running_server(customer, catalog, name: str = "web1") -> Server:
    server = actions.order_server(
        customer, name=name, plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
    )
    operations.execute(str(Operation.objects.get(server=server, type=Operation.Type.CREATE).pk))
    server.refresh_from_db()
    assert (server.status, server.task, server.power_state) == ("running", None, "running")
    return server


def domain_of(conn: libvirt.virConnect, server: Server) -> libvirt.virDomain:
    return conn.lookupByUUIDString(str(server.id))


def panel_unknown(conn: libvirt.virConnect) -> set[str]:
    known = {
        str(pk) for pk in Server.objects.exclude(status=Server.Status.DELETED).values_list("id", flat=True)
    }
    return {domain.UUIDString() for domain in conn.listAllDomains()} - known


def test_a_guest_stopped_started_and_undefined_behind_the_panels_back(customer, catalog, conn):
    host = catalog["host"]
    server = running_server(customer, catalog)
    domain = domain_of(conn, server)

    domain.destroy()
    counts = reconcile_host(host)
    server.refresh_from_db()
    assert counts["stopped"] == 1 and counts["started"] == 0 and counts["vanished"] == 0
    assert (server.status, server.power_state, server.task) == ("stopped", "shutoff", None)

    domain.create()
    counts = reconcile_host(host)
    server.refresh_from_db()
    assert counts["started"] == 1 and counts["stopped"] == 0
    assert (server.status, server.power_state) == ("running", "running")

    domain.destroy()
    domain.undefine()
    counts = reconcile_host(host)
    server.refresh_from_db()
    assert counts["vanished"] == 1
    assert server.status == "error"
    assert server.power_state == ""
    assert "disappeared" in server.status_reason
    assert server.task is None

    # Servers in error are no longer watched: reconciling again changes nothing.
    assert reconcile_host(host)["vanished"] == 0
    server.refresh_from_db()
    assert server.status == "error"


def test_a_paused_guest_updates_the_power_state_only(customer, catalog, conn):
    server = running_server(customer, catalog)
    domain_of(conn, server).suspend()
    counts = reconcile_host(catalog["host"])
    server.refresh_from_db()
    assert (server.status, server.power_state) == ("running", "paused")
    assert counts["stopped"] == counts["started"] == counts["vanished"] == 0


def test_a_reconcile_without_drift_changes_nothing(customer, catalog, conn):
    server = running_server(customer, catalog)
    updated_at = server.updated_at
    counts = reconcile_host(catalog["host"])
    assert counts["stopped"] == counts["started"] == counts["vanished"] == 0
    server.refresh_from_db()
    assert (server.status, server.power_state, server.updated_at) == ("running", "running", updated_at)


def test_a_server_with_a_task_in_flight_is_skipped(customer, catalog, conn):
    host = catalog["host"]
    stopping = running_server(customer, catalog, "stopping")
    vanishing = running_server(customer, catalog, "vanishing")
    actions.request_action(stopping, Operation.Type.POWER_OFF, customer)
    actions.request_action(vanishing, Operation.Type.REBOOT, customer)
    domain_of(conn, stopping).destroy()
    doomed = domain_of(conn, vanishing)
    doomed.destroy()
    doomed.undefine()

    counts = reconcile_host(host)
    assert counts["stopped"] == counts["vanished"] == 0
    for server, task in ((stopping, "power_off"), (vanishing, "reboot")):
        server.refresh_from_db()
        assert (server.status, server.task, server.power_state) == ("running", task, "running")


def test_unknown_domains_are_counted_and_never_touched(customer, catalog, conn):
    server = running_server(customer, catalog)
    foreign_uuid = uuid.uuid4()
    foreign = conn.defineXML(
        Domain(
            name=f"foreign-{foreign_uuid.hex[:8]}",
            uuid=foreign_uuid,
            domain_type="test",
            arch="i686",
            vcpus=1,
            memory_mib=64,
            graphics=False,
        ).to_xml()
    )
    foreign.create()
    foreign_xml = foreign.XMLDesc()
    stopped_foreign = conn.defineXML(
        Domain(
            name=f"foreign-off-{foreign_uuid.hex[:8]}",
            uuid=uuid.uuid4(),
            domain_type="test",
            arch="i686",
            vcpus=1,
            memory_mib=64,
            graphics=False,
        ).to_xml()
    )
    expected_unknown = panel_unknown(conn)
    assert {str(foreign_uuid), stopped_foreign.UUIDString()} <= expected_unknown
    assert str(server.id) not in expected_unknown

    counts = reconcile_host(catalog["host"])

    assert counts["unknown"] == len(expected_unknown)
    assert counts["stopped"] == counts["started"] == counts["vanished"] == 0
    foreign = conn.lookupByUUIDString(str(foreign_uuid))
    assert foreign.isActive()
    assert foreign.XMLDesc() == foreign_xml
    assert not conn.lookupByUUIDString(stopped_foreign.UUIDString()).isActive()
    assert not Server.objects.filter(pk__in=[foreign_uuid]).exists()


def test_an_unreachable_host_leaves_its_servers_alone(customer, catalog, conn):
    server = running_server(customer, catalog)
    Host.objects.filter(pk=catalog["host"].pk).update(uri="qemu+tcp://127.0.0.1:1/system")
    counts = reconcile_host(Host.objects.get(pk=catalog["host"].pk))
    assert counts == {"stopped": 0, "started": 0, "vanished": 0, "unknown": 0}
    server.refresh_from_db()
    assert (server.status, server.power_state, server.status_reason) == ("running", "running", None)
