"""Snapshots through the API on a simulated host: taken, listed, restored and deleted as internal libvirt
snapshots of the server's domain, with a limit per server, and only ever of the customer's own server."""

from __future__ import annotations

import libvirt
import pytest

from panel.models import Operation, Server, Snapshot
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def conn(catalog):
    with factories.TidySimulatedHost(catalog["host"].uri) as conn:
        yield conn


def make_server(owner, catalog, name="web1") -> Server:
    return factories.make_real_server(
        owner, plan=catalog["plan"], image=catalog["image"], region=catalog["region"], name=name
    )


@pytest.fixture
def server(customer, catalog, conn) -> Server:
    return make_server(customer, catalog)


def post_action(api, user, server, **body):
    return api(user).post(f"/api/v1/servers/{server.pk}/actions/", body, format="json")


def act(api, user, server, **body) -> Operation:
    """Ask for an action through the API and run it as the worker does; it must succeed."""
    response = post_action(api, user, server, **body)
    assert response.status_code == 202, response.content
    operation = factories.run_operation(Operation.objects.get(pk=response.json()["id"]))
    assert operation.status == "succeeded", operation.error
    server.refresh_from_db()
    assert server.task is None
    return operation


def listed(api, user, server) -> list[dict]:
    response = api(user).get(f"/api/v1/servers/{server.pk}/snapshots/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == len(body["results"])
    return body["results"]


def in_libvirt(conn: libvirt.virConnect, server) -> list[str]:
    return conn.lookupByUUIDString(str(server.id)).snapshotListNames(0)


def take(api, user, server, name: str) -> Snapshot:
    operation = act(api, user, server, type="snapshot", name=name)
    return Snapshot.objects.get(server=server, name=name, libvirt_name__endswith=operation.id.hex[:12])


def operation_count(server, type: str) -> int:
    return Operation.objects.filter(server=server, type=type).count()


# ---------- Taking, listing, restoring, deleting ----------


def test_a_snapshot_is_taken_as_a_libvirt_snapshot_and_listed(api, customer, server, conn):
    response = post_action(api, customer, server, type="snapshot", name="before upgrade")
    assert response.status_code == 202, response.content
    assert (response.json()["type"], response.json()["status"]) == ("snapshot", "pending")
    assert listed(api, customer, server) == []  # taken by the worker, not by the request
    assert Server.objects.get(pk=server.pk).task == "snapshot"

    operation = factories.run_operation(Operation.objects.get(pk=response.json()["id"]))

    assert operation.status == "succeeded", operation.error
    (entry,) = listed(api, customer, server)
    assert set(entry) == {"id", "name", "created_at", "size_bytes"}
    assert entry["name"] == "before upgrade"
    assert entry["created_at"]
    snapshot = Snapshot.objects.get(pk=entry["id"], server=server)
    assert in_libvirt(conn, server) == [snapshot.libvirt_name]
    server.refresh_from_db()
    assert (server.status, server.task) == ("running", None)


def test_a_stopped_server_can_be_snapshotted_too(api, customer, server, conn):
    act(api, customer, server, type="power_off")
    snapshot = take(api, customer, server, "cold")
    assert in_libvirt(conn, server) == [snapshot.libvirt_name]
    assert server.status == "stopped"


def test_restoring_puts_the_server_back_as_it_was_when_snapshotted(api, customer, server, conn):
    snapshot = take(api, customer, server, "while running")
    act(api, customer, server, type="power_off")
    assert server.status == "stopped"

    operation = act(api, customer, server, type="restore", snapshot=snapshot.pk)

    assert operation.params["snapshot"] == snapshot.pk
    assert (server.status, server.power_state) == ("running", "running")  # it was running in the snapshot
    domain = conn.lookupByUUIDString(str(server.id))
    assert domain.isActive()
    assert domain.snapshotCurrent(0).getName() == snapshot.libvirt_name
    assert [entry["id"] for entry in listed(api, customer, server)] == [snapshot.pk]  # restoring keeps it


def test_restoring_a_snapshot_of_a_stopped_server_leaves_it_stopped(api, customer, server, conn):
    act(api, customer, server, type="power_off")
    snapshot = take(api, customer, server, "cold")
    act(api, customer, server, type="start")

    act(api, customer, server, type="restore", snapshot=snapshot.pk)

    assert (server.status, server.power_state) == ("stopped", "shutoff")
    assert not conn.lookupByUUIDString(str(server.id)).isActive()


def test_a_deleted_snapshot_is_gone_from_the_api_and_from_libvirt(api, customer, server, conn):
    keep = take(api, customer, server, "keep")
    drop = take(api, customer, server, "drop")
    assert sorted(in_libvirt(conn, server)) == sorted([keep.libvirt_name, drop.libvirt_name])

    act(api, customer, server, type="delete_snapshot", snapshot=drop.pk)

    assert [entry["id"] for entry in listed(api, customer, server)] == [keep.pk]
    assert in_libvirt(conn, server) == [keep.libvirt_name]
    assert server.status == "running"


# ---------- The limit ----------


def test_at_the_limit_another_snapshot_is_refused_until_one_is_deleted(api, customer, server, settings, conn):
    settings.SNAPSHOT_LIMIT = 2
    first = take(api, customer, server, "one")
    take(api, customer, server, "two")

    response = post_action(api, customer, server, type="snapshot", name="three")

    assert response.status_code == 422, response.content
    assert response.json()["error"]["message"] == "A server keeps at most 2 snapshots; delete one first."
    assert operation_count(server, "snapshot") == 2
    assert Server.objects.get(pk=server.pk).task is None
    assert len(in_libvirt(conn, server)) == 2

    act(api, customer, server, type="delete_snapshot", snapshot=first.pk)
    take(api, customer, server, "three")
    assert sorted(entry["name"] for entry in listed(api, customer, server)) == ["three", "two"]


# ---------- What is refused ----------


@pytest.mark.parametrize("action", ["restore", "delete_snapshot"])
def test_an_unknown_snapshot_or_one_of_another_server_is_refused(
    api, customer, catalog, server, conn, action
):
    other = make_server(customer, catalog, name="blog")
    theirs = take(api, customer, other, "theirs")

    for snapshot_id in (theirs.pk, theirs.pk + 1000):
        response = post_action(api, customer, server, type=action, snapshot=snapshot_id)
        assert response.status_code == 422, response.content
        assert response.json()["error"]["message"] == f"This server has no snapshot {snapshot_id}."

    assert operation_count(server, action) == 0
    assert Server.objects.get(pk=server.pk).task is None
    assert Snapshot.objects.filter(pk=theirs.pk).exists()
    assert in_libvirt(conn, other) == [theirs.libvirt_name]


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({"type": "snapshot"}, 400, "name"),
        ({"type": "snapshot", "name": "a/b"}, 422, None),
        ({"type": "snapshot", "name": "x" * 65}, 400, "name"),
        ({"type": "restore"}, 400, "snapshot"),
        ({"type": "delete_snapshot", "snapshot": "first"}, 400, "snapshot"),
    ],
    ids=["no-name", "bad-name", "long-name", "restore-without-id", "id-not-a-number"],
)
def test_malformed_snapshot_requests_are_refused(api, customer, server, body, status, field):
    response = api(customer).post(f"/api/v1/servers/{server.pk}/actions/", body, format="json")

    assert response.status_code == status, response.content
    if field:
        assert list(response.json()["error"]["fields"]) == [field]
    assert list(Operation.objects.filter(server=server).values_list("type", flat=True)) == ["create"]


def test_another_customer_can_neither_list_nor_touch_the_snapshots(
    api, customer, other_customer, server, conn
):
    snapshot = take(api, customer, server, "mine")

    assert api(other_customer).get(f"/api/v1/servers/{server.pk}/snapshots/").status_code == 404
    for body in (
        {"type": "restore", "snapshot": snapshot.pk},
        {"type": "delete_snapshot", "snapshot": snapshot.pk},
        {"type": "snapshot", "name": "theirs"},
    ):
        assert post_action(api, other_customer, server, **body).status_code == 404
    assert operation_count(server, "restore") + operation_count(server, "delete_snapshot") == 0
    assert [entry["id"] for entry in listed(api, customer, server)] == [snapshot.pk]


def test_deleting_the_server_removes_its_snapshots(api, customer, server, conn):
    take(api, customer, server, "one")
    take(api, customer, server, "two")

    response = api(customer).delete(f"/api/v1/servers/{server.pk}/")
    assert response.status_code == 202, response.content
    operation = factories.run_operation(Operation.objects.get(server=server, type="delete"))

    assert operation.status == "succeeded", operation.error
    assert not Snapshot.objects.filter(server=server).exists()
    assert str(server.id) not in {domain.UUIDString() for domain in conn.listAllDomains()}
    assert api(customer).get(f"/api/v1/servers/{server.pk}/snapshots/").json()["count"] == 0
