"""On two real libvirt daemons (the system daemon and host2, tests/second_libvirtd.py), with a real Celery
worker: an admin migrates a running server through the API and it moves live (its status stays running
and its task is migrate meanwhile; the action succeeds with its progress recorded; the admin list shows the
new host; the domain runs on host2 with its network filter and is gone from the first host with its
volumes; only host2 holds its claim; its firewall is applied on host2); a stopped server moves cold and
stays stopped, defined on host2."""

from __future__ import annotations

import libvirt
import pytest

from hypervisor.driver import find_domain
from hypervisor.models import Allocation, Host
from panel.models import Firewall, Operation, Server
from panel.servers import actions
from panel.servers.states import Task
from tests import factories
from tests.conftest import wait_for
from tests.panel.migration_support import MIGRATE
from tests.real_workers import remove_leftovers, volumes_of
from tests.second_libvirtd import register_host2, second_libvirtd  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def servers(libvirtd, kvm_host, customer) -> tuple[Server, Server]:
    """A running and a stopped server on the system daemon (made before host2 is registered, so that both
    are placed there)."""
    running, stopped = (tiny_server(customer, kvm_host, name) for name in ("live.example", "cold.example"))
    stop = factories.run_operation(actions.request_action(stopped, Task.POWER_OFF, customer))
    assert stop.status == Operation.Status.SUCCEEDED, stop.error
    return running, Server.objects.get(pk=stopped.pk)


@pytest.fixture
def host2(second_libvirtd, kvm_host, servers) -> Host:  # noqa: F811 (the fixture imported above)
    return register_host2(second_libvirtd, kvm_host.region, "host2-migrate")


@pytest.fixture
def other(host2, servers):
    """A connection to host2; what the servers left there is removed at the end."""
    conn = libvirt.open(host2.uri)
    yield conn
    for server in servers:
        remove_leftovers(conn, str(server.pk))
    conn.close()


def tiny_server(customer, kvm_host, name: str) -> Server:
    plan = factories.make_plan(slug="migrate-tiny", vcpus=1, memory_mib=128, disk_gib=1)
    return factories.make_real_server(
        customer, plan=plan, image=factories.make_image(), region=kvm_host.region, name=name
    )


def firewall_version(server: Server) -> int:
    """The version of the server's network filter (a server without a firewall row has the default)."""
    row = Firewall.objects.filter(pk=server.pk).first()
    return row.version if row else Firewall._meta.get_field("version").default


def firewall_applied(server: Server, before: int) -> bool:
    """The version grew past `before` (the switch-over raised it) and that version was applied."""
    row = Firewall.objects.filter(pk=server.pk).first()
    return row is not None and row.version > before and row.applied_version == row.version


def finished(operation_id) -> Operation | None:
    operation = Operation.objects.get(pk=operation_id)
    return operation if operation.is_finished else None


def test_a_running_server_moves_live_and_a_stopped_one_cold(
    libvirtd, kvm_host, servers, host2, other, api, admin_user, celery_worker
):
    conn = other
    running, stopped = servers
    assert running.host_id == stopped.host_id == kvm_host.pk

    # Live: the server runs meanwhile.
    version_before = firewall_version(running)
    response = api(admin_user).post(
        MIGRATE.format(running.pk), {"host": host2.pk, "timeout_seconds": 300}, format="json"
    )
    assert response.status_code == 202, response.json()
    assert response.json()["mode"] == "live"
    seen = Server.objects.get(pk=running.pk)
    assert (seen.status, seen.task) in {("running", "migrate"), ("running", None)}
    operation = wait_for(lambda: finished(response.json()["id"]), timeout=180, message="the live migration")
    assert operation.status == Operation.Status.SUCCEEDED, (operation.error, operation.detail)
    assert operation.progress["percent"] == 100 and operation.progress["bytes_remaining"] == 0
    assert operation.progress["bytes_total"] > 0

    running.refresh_from_db()
    assert (running.status, running.task, running.host_id) == ("running", None, host2.pk)
    listed = api(admin_user).get("/api/v1/admin/servers/").json()["results"]
    assert [row["host"] for row in listed if row["id"] == str(running.pk)] == ["host2-migrate"]
    assert find_domain(conn, running.pk).isActive()
    assert f"vps-{running.pk}" in conn.listNWFilters()
    assert find_domain(libvirtd, running.pk) is None
    # Its volumes on the first host go right after the switch-over has been recorded.
    wait_for(lambda: volumes_of(libvirtd, str(running.pk)) == {}, timeout=30, message="the source cleaned up")
    assert list(Allocation.objects.filter(consumer_uuid=running.pk).values_list("host_id", flat=True)) == [
        host2.pk
    ]
    # The firewall is sent again to the new host after the switch-over, and recorded applied there.
    wait_for(
        lambda: firewall_applied(running, version_before), timeout=60, message="the firewall applied on host2"
    )

    # Cold: the stopped server stays stopped.
    response = api(admin_user).post(MIGRATE.format(stopped.pk), {"host": host2.pk}, format="json")
    assert response.status_code == 202, response.json()
    assert response.json()["mode"] == "cold"
    operation = wait_for(lambda: finished(response.json()["id"]), timeout=180, message="the cold migration")
    assert operation.status == Operation.Status.SUCCEEDED, (operation.error, operation.detail)
    assert operation.progress["percent"] == 100
    stopped.refresh_from_db()
    assert (stopped.status, stopped.task, stopped.host_id) == ("stopped", None, host2.pk)
    domain = find_domain(conn, stopped.pk)
    assert domain is not None and not domain.isActive()
    wait_for(lambda: find_domain(libvirtd, stopped.pk) is None, timeout=30, message="the source undefined")
    wait_for(lambda: volumes_of(libvirtd, str(stopped.pk)) == {}, timeout=30, message="the source cleaned up")
    assert list(Allocation.objects.filter(consumer_uuid=stopped.pk).values_list("host_id", flat=True)) == [
        host2.pk
    ]
