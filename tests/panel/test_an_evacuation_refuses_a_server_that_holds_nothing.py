"""A server in error that holds nothing (a failed create gave back its room and ended its subscription)
is not evacuated: it would be started with no subscription and no room. `evacuate_server` refuses it (422,
nothing changes), and a host's evacuation lists it as failed with a plain reason while it rebuilds the
others. On simulated hosts."""

from __future__ import annotations

import pytest

from billing import subscriptions
from hypervisor import claims
from hypervisor.models import Host
from panel.infrastructure import host_moves
from panel.models import HostMove, HostMoveItem, Operation, Server
from panel.servers import evacuation
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(customer, tmp_path):
    region, plan, image = factories.make_catalog()
    factories.make_pool(region)
    uri = factories.node_uri(tmp_path, name="empty-lost.xml")
    with factories.TidySimulatedHost(uri):
        lost = factories.make_host(uri, region=region, name="empty-lost")
        made = {
            name: factories.make_real_server(customer, plan=plan, image=image, region=region, name=name)
            for name in ("kept.example", "no-room.example", "unpaid.example")
        }
        factories.make_host(factories.node_uri(tmp_path, name="empty-spare.xml"), region=region)
        for name in ("no-room.example", "unpaid.example"):
            Server.objects.filter(pk=made[name].pk).update(status=Server.Status.ERROR)
        claims.release_on(made["no-room.example"].pk, lost.pk)  # its room was given back
        subscriptions.end_subscription(str(made["unpaid.example"].pk))  # its subscription ended
        Host.objects.filter(pk=lost.pk).update(state=Host.State.DOWN)
        yield {"lost": lost, "servers": made}


@pytest.mark.parametrize("name", ["no-room.example", "unpaid.example"])
def test_evacuating_a_server_that_holds_nothing_is_refused_and_changes_nothing(admin_user, world, name):
    server = world["servers"][name]

    with pytest.raises(evacuation.Unprocessable) as refused:
        evacuation.evacuate_server(server, admin_user)

    assert refused.value.message == evacuation.HOLDS_NOTHING
    server.refresh_from_db()
    assert (server.status, server.task, server.host_id) == (Server.Status.ERROR, None, world["lost"].pk)
    assert not Operation.objects.filter(server=server, type="evacuate").exists()


def test_a_hosts_evacuation_lists_them_as_failed_and_rebuilds_the_others(admin_user, world):
    servers = world["servers"]
    move = host_moves.start_evacuation(world["lost"], admin_user)

    host_moves.advance(move.pk)

    items = {item.server.name: item for item in move.items.select_related("server", "operation")}
    assert items["kept.example"].status == HostMoveItem.Status.MOVING
    for name in ("no-room.example", "unpaid.example"):
        assert (items[name].status, items[name].reason) == (
            HostMoveItem.Status.FAILED,
            evacuation.HOLDS_NOTHING,
        )
    assert factories.run_operation(items["kept.example"].operation).status == Operation.Status.SUCCEEDED
    host_moves.advance(move.pk)
    move.refresh_from_db()
    assert move.status == HostMove.Status.FINISHED
    assert Server.objects.get(pk=servers["unpaid.example"].pk).task is None
