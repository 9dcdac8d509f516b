"""An evacuation that fails leaves the server in error with a plain reason (staff see the error) and what
it holds: failed after the server moved to its target, it holds the target's room and its addresses, and
evacuating it again rebuilds it there (no second claim); failed before it moved (the target went down), the
target's room goes back and evacuating it again claims anew. On simulated hosts."""

from __future__ import annotations

import pytest

from hypervisor.models import Allocation, Host
from panel.infrastructure import host_moves
from panel.models import Backup, HostMove, HostMoveItem, Operation, Server
from panel.servers import evacuation
from tests import factories
from tests.panel.backup_policy_support import give_backup_target, make_backup, now

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(customer, tmp_path):
    region, plan, image = factories.make_catalog()
    factories.make_pool(region)
    uri = factories.node_uri(tmp_path, name="lost.xml")
    with factories.TidySimulatedHost(uri):
        lost = factories.make_host(uri, region=region, name="lost")
        server = factories.make_real_server(
            customer, plan=plan, image=image, region=region, name="web.example"
        )
        spare = factories.make_host(
            factories.node_uri(tmp_path, name="spare.xml"), region=region, name="spare"
        )
        Host.objects.filter(pk=lost.pk).update(state=Host.State.DOWN)
        yield {"lost": lost, "spare": spare, "server": server, "region": region}


def hosts_held(server: Server) -> list[int]:
    return sorted(Allocation.objects.filter(consumer_uuid=server.pk).values_list("host_id", flat=True))


def step(move) -> list[Operation]:
    """One step of the move, and each operation it started carried out as a worker would."""
    host_moves.advance(move.pk)
    items = move.items.filter(status=HostMoveItem.Status.MOVING).select_related("operation")
    return [factories.run_operation(item.operation) for item in items]


def test_a_failure_after_the_move_leaves_it_in_error_on_its_target_and_evacuating_again_rebuilds_it_there(
    admin_user, world
):
    server, lost, spare = world["server"], world["lost"], world["spare"]
    addresses = sorted(server.ipv4)
    give_backup_target(world["region"])
    backup = make_backup(server, now())
    move = host_moves.start_evacuation(lost, admin_user)
    host_moves.advance(move.pk)
    operation = move.items.get().operation
    assert operation.params["backup"] == backup.pk and hosts_held(server) == sorted([lost.pk, spare.pk])
    Backup.objects.filter(pk=backup.pk).update(status=Backup.Status.FAILED)  # its file turned out bad

    failed = factories.run_operation(operation)

    assert failed.status == Operation.Status.FAILED and "not complete" in failed.detail
    server.refresh_from_db()
    assert (server.status, server.task, server.host_id) == (Server.Status.ERROR, None, spare.pk)
    assert server.status_reason == evacuation.EVACUATE_FAILED_TEXT and "not complete" in server.status_detail
    assert hosts_held(server) == [spare.pk]  # the lost host's claim went with the move; the target's stays
    assert sorted(server.ipv4) == addresses
    host_moves.advance(move.pk)
    move.refresh_from_db()
    assert move.status == HostMove.Status.FINISHED
    assert "not complete" in move.items.get().reason

    # Evacuating the host again takes the server it left on its target.
    again = host_moves.start_evacuation(lost, admin_user)
    assert [item.server_id for item in again.items.all()] == [server.pk]
    (rebuilt,) = step(again)

    assert rebuilt.params["retry"] is True and rebuilt.params["target_host"] == spare.pk
    assert "backup" not in rebuilt.params  # the failed backup is not used again: the image is
    assert rebuilt.params["was"] == Server.Status.RUNNING  # as it was before its host was lost
    assert rebuilt.status == Operation.Status.SUCCEEDED, rebuilt.detail
    assert hosts_held(server) == [spare.pk]  # no second claim
    server.refresh_from_db()
    assert (server.status, server.host_id, server.status_reason) == (Server.Status.RUNNING, spare.pk, None)
    assert sorted(server.ipv4) == addresses
    step(again)
    again.refresh_from_db()
    assert again.status == HostMove.Status.FINISHED and again.items.get().status == HostMoveItem.Status.MOVED


def test_a_failure_before_the_move_gives_the_targets_room_back_and_a_retry_claims_anew(
    admin_user, world, tmp_path
):
    server, lost, spare = world["server"], world["lost"], world["spare"]
    operation = evacuation.evacuate_server(server, admin_user)
    Host.objects.filter(pk=spare.pk).update(state=Host.State.DOWN)  # the target is lost too

    failed = factories.run_operation(operation)

    assert failed.status == Operation.Status.FAILED
    server.refresh_from_db()
    assert (server.status, server.host_id) == (Server.Status.ERROR, lost.pk)
    assert hosts_held(server) == [lost.pk]
    third = factories.make_host(factories.node_uri(tmp_path, name="third.xml"), region=world["region"])

    again = evacuation.evacuate_server(server, admin_user)

    assert again.params["target_host"] == third.pk and not again.params.get("retry")
    assert factories.run_operation(again).status == Operation.Status.SUCCEEDED
    server.refresh_from_db()
    assert (server.status, server.host_id) == (Server.Status.RUNNING, third.pk)
    assert hosts_held(server) == [third.pk]


def test_a_server_whose_host_answers_is_not_evacuated(admin_user, customer, catalog):
    server = factories.make_server(customer, catalog)

    with pytest.raises(evacuation.Conflict):
        evacuation.evacuate_server(server, admin_user)

    server.refresh_from_db()
    assert server.task is None and not Operation.objects.filter(server=server).exists()
