"""An admin drains a host through the API (simulated hosts: libvirt's test driver cannot migrate, so the
migrations themselves fail with the hypervisor's reason, which is what the failure list must show): 202, the
host goes into maintenance, one item per server, never more than HOST_MOVE_CONCURRENCY moving at a time,
servers that cannot move (no room anywhere, rescue mode, error) listed with the reason, and the move ends
finished with the host still in maintenance and every server where it was, idle."""

from __future__ import annotations

import pytest

from hypervisor.models import Allocation, Host
from panel.infrastructure import host_moves
from panel.models import HostMove, HostMoveItem, Server
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(customer, tmp_path):
    region, plan, image = factories.make_catalog()
    factories.make_pool(region)
    big_plan = factories.make_plan("big", vcpus=2, memory_mib=4096, disk_gib=2)
    uri = factories.node_uri(tmp_path, name="source.xml")
    with factories.TidySimulatedHost(uri):
        source = factories.make_host(uri, region=region, name="source")
        servers = [
            factories.make_real_server(
                customer, plan=plan, image=image, region=region, name=f"web{n}.example"
            )
            for n in range(3)
        ]
        big = factories.make_real_server(
            customer, plan=big_plan, image=image, region=region, name="big.example"
        )
        catalog = {"region": region, "plan": plan, "image": image, "host": source}
        rescued = factories.make_server(customer, catalog, "rescued.example", status=Server.Status.RESCUE)
        broken = factories.make_server(customer, catalog, "broken.example", status=Server.Status.ERROR)
        # Room for the small servers only, on the one other host of the region.
        target = factories.make_host(
            factories.node_uri(tmp_path, name="target.xml"), region=region, name="target"
        )
        factories.set_host_size(target, vcpus=8, memory_mib=2048, disk_gib=100)
        yield {
            "source": source,
            "target": target,
            "small": servers,
            "big": big,
            "rescued": rescued,
            "broken": broken,
        }


def step_until_finished(move: HostMove, concurrency: int) -> int:
    """Step the move as the beat would, carrying out each started operation as a worker would; returns the
    most items seen moving at once."""
    most = 0
    for _round in range(30):
        host_moves.advance(move.pk)
        moving = list(move.items.filter(status=HostMoveItem.Status.MOVING).select_related("operation"))
        assert len(moving) <= concurrency
        most = max(most, len(moving))
        for item in moving:
            factories.run_operation(item.operation)
        move.refresh_from_db()
        if move.status == HostMove.Status.FINISHED:
            return most
    pytest.fail("the drain did not finish")


def test_a_drain_moves_a_few_servers_at_a_time_and_lists_each_that_could_not_move(
    api, admin_user, world, settings
):
    settings.HOST_MOVE_CONCURRENCY = 2
    source, target = world["source"], world["target"]
    everyone = [*world["small"], world["big"], world["rescued"], world["broken"]]

    response = api(admin_user).post(
        f"/api/v1/admin/hosts/{source.pk}/drain/", {"timeout_seconds": 60}, format="json"
    )

    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["maintenance"] is True and body["id"] == source.pk
    assert {key: body["move"][key] for key in ("kind", "status", "total", "waiting", "moving", "moved")} == {
        "kind": "drain",
        "status": "running",
        "total": len(everyone),
        "waiting": len(everyone),
        "moving": 0,
        "moved": 0,
    }
    move = HostMove.objects.get(host=source)
    assert (move.requested_by, move.timeout_seconds) == (admin_user, 60)
    assert {item.server_id for item in move.items.all()} == {server.pk for server in everyone}
    source.refresh_from_db()
    assert source.maintenance and not source.schedulable

    most = step_until_finished(move, settings.HOST_MOVE_CONCURRENCY)

    assert most == settings.HOST_MOVE_CONCURRENCY  # a few at a time, not one by one nor all at once
    move.refresh_from_db()
    assert move.finished_at is not None
    shown = api(admin_user).get(f"/api/v1/admin/hosts/{source.pk}/").json()
    assert shown["maintenance"] is True  # the host stays in maintenance
    assert shown["move"]["status"] == "finished"
    assert (shown["move"]["waiting"], shown["move"]["moving"]) == (0, 0)
    reasons = {entry["name"]: entry["reason"] for entry in shown["move"]["failed"]}
    assert set(reasons) == {server.name for server in everyone}  # the test driver migrates nothing
    assert "No other host" in reasons["big.example"]  # no room: the claim's reason
    assert "rescue" in reasons["rescued.example"].lower()
    assert "error" in reasons["broken.example"].lower()
    for server in world["small"]:
        assert reasons[server.name]  # what the hypervisor said, for staff
    for server in everyone:
        server.refresh_from_db()
        assert (server.host_id, server.task) == (source.pk, None)
    for server in world["small"]:
        assert server.status == Server.Status.RUNNING
        # The failed migrations gave the target's room back: each holds its source's claim only.
        assert list(Allocation.objects.filter(consumer_uuid=server.pk).values_list("host_id", flat=True)) == [
            source.pk
        ]
    target.refresh_from_db()
    assert target.used_memory_mib == 0
    assert Host.objects.get(pk=source.pk).maintenance
