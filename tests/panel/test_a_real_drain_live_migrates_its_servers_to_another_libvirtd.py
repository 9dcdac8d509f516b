"""On two real libvirt daemons (the system daemon and host2, tests/second_libvirtd.py): an admin drains the
system daemon's host through the API; its two small running servers are live-migrated to host2, one move
step after another as the beat would take them, and the drain ends finished with both servers running on
host2, nothing of them left on the drained host, and the drained host in maintenance."""

from __future__ import annotations

import libvirt
import pytest

from hypervisor.driver import find_domain
from hypervisor.models import Allocation
from panel.infrastructure import host_moves
from panel.models import HostMove, HostMoveItem, Operation, Server
from tests import factories
from tests.real_workers import remove_leftovers
from tests.second_libvirtd import register_host2, second_libvirtd  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]


def test_a_drain_moves_two_running_servers_to_the_other_daemon(
    libvirtd,
    kvm_host,
    second_libvirtd,  # noqa: F811 (the fixture imported above)
    api,
    admin_user,
    customer,
    settings,
    purge_queue,
):
    settings.HOST_MOVE_CONCURRENCY = 2
    rig = second_libvirtd
    plan = factories.make_plan(slug="drain-tiny", vcpus=1, memory_mib=128, disk_gib=1)
    image = factories.make_image()
    servers = [
        factories.make_real_server(
            customer, plan=plan, image=image, region=kvm_host.region, name=f"drain{n}.example"
        )
        for n in range(2)
    ]
    host2 = register_host2(rig, kvm_host.region, "host2-drain")
    other = libvirt.open(rig.uri)
    try:
        response = api(admin_user).post(f"/api/v1/admin/hosts/{kvm_host.pk}/drain/", {}, format="json")
        assert response.status_code == 202, response.json()
        move = HostMove.objects.get(host=kvm_host)

        for _round in range(10):
            host_moves.advance(move.pk)
            for item in move.items.filter(status=HostMoveItem.Status.MOVING).select_related("operation"):
                done = factories.run_operation(item.operation)
                assert done.status == Operation.Status.SUCCEEDED, (done.error, done.detail)
            move.refresh_from_db()
            if move.status == HostMove.Status.FINISHED:
                break

        assert move.status == HostMove.Status.FINISHED
        shown = api(admin_user).get(f"/api/v1/admin/hosts/{kvm_host.pk}/").json()
        assert (shown["move"]["moved"], shown["move"]["failed"], shown["maintenance"]) == (2, [], True)
        for server in servers:
            server = Server.objects.get(pk=server.pk)
            assert (server.host_id, server.status, server.task) == (host2.pk, Server.Status.RUNNING, None)
            assert find_domain(other, server.pk).isActive()
            assert find_domain(libvirtd, server.pk) is None
            assert list(
                Allocation.objects.filter(consumer_uuid=server.pk).values_list("host_id", flat=True)
            ) == [host2.pk]
    finally:
        for server in servers:
            remove_leftovers(other, str(server.pk))
        other.close()
