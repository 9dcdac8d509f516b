"""POST admin/servers/{id}/migrate/ refuses what it cannot do, with the API's error body, and changes
nothing then: only admins may (staff and customers 403), an unknown server is a 404, another action in
flight or a status that cannot move a 409, a target that cannot take the server (another region, not ready,
disabled, in maintenance, its own host, no room; no other host with room) or a source host that is down a
422, a malformed body a 400."""

from __future__ import annotations

import uuid

import pytest

from hypervisor.models import Host
from panel.models import Operation, Server, Snapshot
from tests import factories
from tests.panel.migration_support import MIGRATE, held, source_uri, target_uri, two_hosts_and_a_server, used

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(customer, tmp_path):
    with factories.TidySimulatedHost(source_uri(tmp_path)), factories.TidySimulatedHost(target_uri(tmp_path)):
        yield two_hosts_and_a_server(customer, tmp_path)


def nothing_changed(world) -> None:
    world.server.refresh_from_db()
    assert (world.server.status, world.server.task, world.server.host_id) == (
        "running",
        None,
        world.source.pk,
    )
    assert held(world.server) == {"source": (1, 256, 1)}
    assert used(world.target) == (0, 0, 0)
    assert not Operation.objects.filter(type="migrate").exists()


def error(response, status: int) -> dict:
    assert response.status_code == status, response.content
    return response.json()["error"]


def test_only_admins_may_migrate(api, staff, customer, world):
    url = MIGRATE.format(world.server.pk)
    assert error(api(staff).post(url, {}, format="json"), 403)["code"] == "forbidden"
    assert error(api(customer).post(url, {}, format="json"), 403)["code"] == "forbidden"
    assert api(None).post(url, {}, format="json").status_code == 401
    nothing_changed(world)


def test_an_unknown_server_is_a_404(api, admin_user, world):
    assert (
        error(api(admin_user).post(MIGRATE.format(uuid.uuid4()), {}, format="json"), 404)["code"]
        == "not_found"
    )


def test_another_action_in_flight_or_a_status_that_cannot_move_is_a_409(api, admin_user, world):
    Server.objects.filter(pk=world.server.pk).update(task="reboot")
    body = error(api(admin_user).post(MIGRATE.format(world.server.pk), {}, format="json"), 409)
    assert body["code"] == "conflict" and "in progress" in body["message"]
    Server.objects.filter(pk=world.server.pk).update(task=None, status=Server.Status.RESCUE)
    body = error(api(admin_user).post(MIGRATE.format(world.server.pk), {}, format="json"), 409)
    assert "Cannot migrate a server that is rescue mode" in body["message"]
    Server.objects.filter(pk=world.server.pk).update(status=Server.Status.RUNNING)
    nothing_changed(world)


def unsuitable(world, tmp_path) -> dict[str, tuple[int, str]]:
    """Hosts that cannot take the server, and what the answer says of each."""
    other_region = factories.make_region("bandung", "Bandung")
    far = factories.set_host_size(factories.make_host(region=other_region, probe=False, name="far"))
    new = factories.make_host(region=world.region, probe=False, name="new")
    disabled = factories.set_host_size(
        factories.make_host(region=world.region, probe=False, name="off"), enabled=False
    )
    busy = factories.set_host_size(
        factories.make_host(region=world.region, probe=False, name="busy"), maintenance=True
    )
    tiny = factories.set_host_size(
        factories.make_host(region=world.region, probe=False, name="tiny"), memory_mib=128
    )
    return {
        "another region": (far.pk, "in another region"),
        "not ready": (new.pk, "is not ready"),
        "disabled": (disabled.pk, "is disabled"),
        "maintenance": (busy.pk, "in maintenance"),
        "its own host": (world.source.pk, "is on source already"),
        "no room": (tiny.pk, "cannot take this server"),
        "unknown": (999_999, "Unknown host 999999"),
    }


def test_a_target_that_cannot_take_the_server_is_a_422(api, admin_user, world, tmp_path):
    for case, (host_id, words) in unsuitable(world, tmp_path).items():
        body = error(
            api(admin_user).post(MIGRATE.format(world.server.pk), {"host": host_id}, format="json"), 422
        )
        assert words in body["message"], (case, body)
    nothing_changed(world)


def test_no_other_host_with_room_is_a_422_out_of_capacity(api, admin_user, world):
    factories.set_host_size(world.target, memory_mib=128)
    body = error(api(admin_user).post(MIGRATE.format(world.server.pk), {}, format="json"), 422)
    assert body["code"] == "out_of_capacity"
    assert "No other host" in body["message"]
    nothing_changed(world)


def test_a_down_source_host_is_a_422_pointing_to_evacuation(api, admin_user, world):
    Host.objects.filter(pk=world.source.pk).update(state=Host.State.DOWN)
    body = error(
        api(admin_user).post(MIGRATE.format(world.server.pk), {"host": world.target.pk}, format="json"), 422
    )
    assert "Evacuate" in body["message"]
    Host.objects.filter(pk=world.source.pk).update(state=Host.State.READY)
    nothing_changed(world)


def test_a_server_with_snapshots_is_a_422_until_they_are_deleted(api, admin_user, world):
    Snapshot.objects.create(server=world.server, name="before upgrade", libvirt_name="snap-1")
    body = error(api(admin_user).post(MIGRATE.format(world.server.pk), {}, format="json"), 422)
    assert "delete its snapshots first" in body["message"]
    Snapshot.objects.all().delete()
    nothing_changed(world)


@pytest.mark.parametrize(
    "body",
    [
        {"timeout_seconds": 5},
        {"timeout_seconds": 86_401},
        {"max_bandwidth_mib": -1},
        {"host": "target"},
        {"max_bandwidth_mib": "fast"},
    ],
)
def test_a_malformed_body_is_a_400_naming_the_field(api, admin_user, world, body):
    answer = error(api(admin_user).post(MIGRATE.format(world.server.pk), body, format="json"), 400)
    assert answer["code"] == "invalid"
    assert set(answer["fields"]) == set(body)
    nothing_changed(world)


def test_a_body_that_is_not_json_is_a_400(api, admin_user, world):
    response = api(admin_user).post(
        MIGRATE.format(world.server.pk), "{not json", content_type="application/json"
    )
    assert error(response, 400)
    nothing_changed(world)
