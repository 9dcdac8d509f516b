"""Reconcile makes the panel follow the hypervisor, the authority for power state: guests that stopped or
started behind the panel's back, domains that vanished, and domains the panel does not know.

Lifecycle events (`hypervisor.events`, applied by `panel.servers.power_events`) make the same decision
(`reconcile.follow`) for one server as soon as its domain changes: the last tests feed real events of the
simulated host to the panel and check that they end where reconcile ends."""

from __future__ import annotations

import time
import uuid

import libvirt
import pytest

from hypervisor import connection
from hypervisor.events import LifecycleEvent, Subscription, power_state_of
from hypervisor.models import Host
from hypervisor.power_state import PowerState
from hypervisor.xml.domain import Domain
from panel.models import Operation, Server
from panel.servers import actions, operations, power_events
from panel.servers.reconcile import Change, reconcile_host
from tests import factories

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


# ---------- Lifecycle events make the same decision ----------


class Events:
    """Real lifecycle events of the simulated host's domains, received as the listener's watchers receive
    them (in libvirt's event-loop thread) and applied here, in the test's thread and transaction."""

    def __init__(self, conn: libvirt.virConnect, host: Host):
        self.received: list[LifecycleEvent] = []
        self.subscription = Subscription(conn, host.pk, host.name, self.received.append)
        self.taken = 0

    def of(self, server: Server, count: int) -> list[LifecycleEvent]:
        """Wait for `count` new events of the server's domain (others' are passed over); take them."""
        deadline = time.monotonic() + 5
        while True:
            fresh = self.received[self.taken :]
            mine = [event for event in fresh if event.server_id == str(server.id)]
            if len(mine) >= count:
                self.taken = len(self.received)
                return mine
            if time.monotonic() > deadline:
                pytest.fail(f"{len(mine)} of {count} events of {server.name}: {fresh}")
            time.sleep(0.01)

    def skip(self) -> None:
        time.sleep(0.05)  # the test driver queues its events on the event loop's timer
        self.taken = len(self.received)


@pytest.fixture
def events(catalog, conn):
    listening = Events(conn, catalog["host"])
    yield listening
    listening.subscription.close(close_connection=False)  # the driver's cached connection stays


def state(server: Server) -> tuple:
    server.refresh_from_db()
    return server.status, server.power_state, server.status_reason, server.task


def power_off_in_the_panel(server: Server, customer) -> None:
    operation = factories.run_operation(actions.perform(server, "power_off", customer, {}))
    assert operation.status == "succeeded", operation.error


def destroy(domain: libvirt.virDomain) -> None:
    domain.destroy()


def undefine(domain: libvirt.virDomain) -> None:
    if domain.isActive():
        domain.destroy()
    domain.undefine()


# Given the status the panel shows, what happens to the domain behind its back, and what follows.
CASES = {
    "a guest destroyed": ("running", [destroy], Change.STOPPED, ("stopped", "shutoff")),
    "a guest started": ("stopped", [lambda domain: domain.create()], Change.STARTED, ("running", "running")),
    "a guest paused": ("running", [lambda domain: domain.suspend()], Change.RECORDED, ("running", "paused")),
    "a running guest undefined": ("running", [undefine], Change.VANISHED, ("error", "")),
    "a stopped guest undefined": ("stopped", [undefine], Change.VANISHED, ("error", "")),
    "a guest paused and resumed": (
        "running",
        [lambda domain: domain.suspend(), lambda domain: domain.resume()],
        None,
        ("running", "running"),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_events_and_reconcile_end_in_the_same_state(customer, catalog, conn, events, case):
    given, steps, change, (status, power_state) = CASES[case]
    by_events = running_server(customer, catalog, "by-events")
    by_reconcile = running_server(customer, catalog, "by-reconcile")
    if given == "stopped":
        power_off_in_the_panel(by_events, customer)
        power_off_in_the_panel(by_reconcile, customer)
    events.skip()  # what the panel's own operations did

    for step in steps:
        step(domain_of(conn, by_events))
        step(domain_of(conn, by_reconcile))
    changes = [power_events.apply_event(event) for event in events.of(by_events, len(steps))]
    counts = reconcile_host(catalog["host"])

    assert [c for c in changes if c is not None] == ([change] if change else [])
    expected = {"stopped": 0, "started": 0, "vanished": 0}
    if change is not None and change.value in expected:
        expected[change.value] = 1  # reconcile changed the other server only
    assert {key: counts[key] for key in expected} == expected
    assert state(by_events) == state(by_reconcile)
    assert state(by_events)[:2] == (status, power_state)
    if change == Change.VANISHED:
        assert "disappeared" in by_events.status_reason


@pytest.mark.parametrize("task", ["reboot", "delete"])
def test_events_leave_a_server_with_a_task_in_flight_alone(customer, catalog, conn, events, task):
    """A delete (or a rebuild) undefines the domain legitimately: the operation owns the state."""
    server = running_server(customer, catalog)
    events.skip()
    if task == "delete":
        actions.delete_server(server, customer)
    else:
        actions.request_action(server, task, customer)
    before = state(server)

    undefine(domain_of(conn, server))
    changes = [power_events.apply_event(event) for event in events.of(server, 2)]

    assert changes == [None, None]
    assert state(server) == before
    assert before[3] == task and before[0] == ("deleting" if task == "delete" else "running")


def test_events_of_a_deleted_server_change_nothing(customer, catalog, conn, events):
    server = running_server(customer, catalog)
    events.skip()
    operation = factories.run_operation(actions.delete_server(server, customer))
    assert operation.status == "succeeded", operation.error

    # The delete's own events (stopped, undefined), applied once it finished.
    changes = [power_events.apply_event(event) for event in events.of(server, 2)]

    assert changes == [None, None]
    assert state(server)[0] == "deleted"


def test_a_late_event_never_undoes_what_an_operation_did_since(customer, catalog, conn, events):
    """Each event is applied with the state the host reports when it is applied, not the one it carried:
    a power off and a start through the panel, whose events are applied after both finished, leave the
    server running."""
    server = running_server(customer, catalog)
    events.skip()
    power_off_in_the_panel(server, customer)
    operation = factories.run_operation(actions.perform(server, "start", customer, {}))
    assert operation.status == "succeeded", operation.error
    assert state(server)[:2] == ("running", "running")

    stopped, started = events.of(server, 2)
    assert (stopped.power_state, started.power_state) == (PowerState.SHUTOFF, PowerState.RUNNING)
    assert power_events.apply_event(stopped) is None
    assert state(server)[:2] == ("running", "running")
    assert power_events.apply_event(started) is None


def test_events_of_domains_the_panel_does_not_know_are_ignored(catalog, conn, events):
    server_id = str(uuid.uuid4())
    event = LifecycleEvent(catalog["host"].pk, catalog["host"].name, server_id, 5, 1, PowerState.SHUTOFF)
    assert power_events.apply_event(event) is None


def test_every_lifecycle_event_maps_to_a_power_state():
    assert power_state_of(libvirt.VIR_DOMAIN_EVENT_STARTED) == PowerState.RUNNING
    assert power_state_of(libvirt.VIR_DOMAIN_EVENT_RESUMED) == PowerState.RUNNING
    assert power_state_of(libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED) == (
        PowerState.SHUTOFF
    )
    assert power_state_of(libvirt.VIR_DOMAIN_EVENT_SHUTDOWN) == PowerState.SHUTTING_DOWN
    assert power_state_of(libvirt.VIR_DOMAIN_EVENT_SUSPENDED) == PowerState.PAUSED
    assert power_state_of(libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED) == PowerState.SUSPENDED
    assert power_state_of(libvirt.VIR_DOMAIN_EVENT_CRASHED) == PowerState.CRASHED
    assert power_state_of(libvirt.VIR_DOMAIN_EVENT_UNDEFINED) == PowerState.NONE
    assert power_state_of(libvirt.VIR_DOMAIN_EVENT_DEFINED) is None  # a definition changes no power state
