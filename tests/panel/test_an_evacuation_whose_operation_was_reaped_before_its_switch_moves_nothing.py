"""A worker took an evacuation's lease, then stalled before moving the server; the reaper failed the
operation past its deadline and gave the target's room back. When the worker goes on, its switch finds the
operation closed: it stops (LeaseLost) without moving the server or releasing anything, so no second,
untracked copy is built on the target. On simulated hosts."""

from __future__ import annotations

from datetime import timedelta

import libvirt
import pytest
from django.utils import timezone

from hypervisor import connection
from hypervisor.models import Allocation, Host
from panel.models import Operation, Server
from panel.servers import evacuation, leases, operations
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(customer, tmp_path):
    region, plan, image = factories.make_catalog()
    factories.make_pool(region)
    uri = factories.node_uri(tmp_path, name="reaped-lost.xml")
    with factories.TidySimulatedHost(uri):
        lost = factories.make_host(uri, region=region, name="reaped-lost")
        server = factories.make_real_server(
            customer, plan=plan, image=image, region=region, name="web.example"
        )
        spare = factories.make_host(factories.node_uri(tmp_path, name="reaped-spare.xml"), region=region)
        Host.objects.filter(pk=lost.pk).update(state=Host.State.DOWN)
        yield {"lost": lost, "spare": spare, "server": server}


def hosts_held(server: Server) -> list[int]:
    return sorted(Allocation.objects.filter(consumer_uuid=server.pk).values_list("host_id", flat=True))


def test_an_evacuation_reaped_before_its_switch_does_not_move_the_server_or_release_anything(
    admin_user, world
):
    server, lost, spare = world["server"], world["lost"], world["spare"]
    requested = evacuation.evacuate_server(server, admin_user)
    assert hosts_held(server) == sorted([lost.pk, spare.pk])
    running = operations.begin(str(requested.pk))  # the worker holds the lease ...
    assert running is not None and running.lease_owner
    Operation.objects.filter(pk=requested.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    assert operations.reap_stuck_operations() == 1  # ... and stalls past the deadline: the reaper fails it
    assert hosts_held(server) == [lost.pk]  # the target's room went back

    with pytest.raises(leases.LeaseLost):
        evacuation.evacuate(running)  # the worker goes on

    server.refresh_from_db()
    assert (server.host_id, server.status, server.task) == (lost.pk, Server.Status.ERROR, None)
    assert hosts_held(server) == [lost.pk]  # the lost host's claim is still what the server holds
    with pytest.raises(libvirt.libvirtError):
        connection.connection(spare.uri).lookupByUUIDString(str(server.pk))  # nothing built on the target
    assert Operation.objects.get(pk=requested.pk).status == Operation.Status.FAILED
