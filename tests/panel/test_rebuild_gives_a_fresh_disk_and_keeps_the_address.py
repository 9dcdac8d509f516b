"""A rebuild reinstalls the server from an image on a simulated host: the same server and IPv4 address, the
new image, no snapshots of the old disk; an image that does not fit is refused, and a broken server can be
rebuilt."""

from __future__ import annotations

import pytest

from hypervisor.models import Allocation, Image, IPAddress
from panel.models import Operation, Server, Snapshot
from panel.servers import reconcile
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def conn(catalog):
    with factories.TidySimulatedHost(catalog["host"].uri) as conn:
        yield conn


@pytest.fixture
def pool(catalog):
    return factories.make_pool(catalog["region"], cidr="198.51.100.0/28")


@pytest.fixture
def server(customer, catalog, pool, conn) -> Server:
    server = factories.make_real_server(
        customer, plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
    )
    assert len(server.ipv4) == 1
    return server


@pytest.fixture
def ubuntu(db) -> Image:
    return Image.objects.create(slug="ubuntu-24", name="Ubuntu 24.04", os_family="ubuntu")


def post_action(api, user, server, **body):
    return api(user).post(f"/api/v1/servers/{server.pk}/actions/", body, format="json")


def act(api, user, server, **body) -> Operation:
    response = post_action(api, user, server, **body)
    assert response.status_code == 202, response.content
    return factories.run_operation(Operation.objects.get(pk=response.json()["id"]))


def fresh(server) -> Server:
    """The server as the API and the database see it now (not a cached address list)."""
    return Server.objects.get(pk=server.pk)


def test_a_rebuilt_server_runs_the_new_image_with_the_same_address(
    api, customer, server, ubuntu, conn, catalog
):
    address = server.ipv4[0]
    allocation = Allocation.objects.get(consumer_uuid=server.id)

    operation = act(api, customer, server, type="rebuild", image="ubuntu-24")

    assert operation.status == "succeeded", operation.error
    assert operation.params["image"] == "ubuntu-24"
    server = fresh(server)
    assert (server.status, server.task, server.power_state) == ("running", None, "running")
    assert server.image == ubuntu
    assert server.ipv4 == [address]
    assert IPAddress.objects.filter(consumer_uuid=server.id).count() == 1
    assert Allocation.objects.get(consumer_uuid=server.id).pk == allocation.pk  # no new claim
    domain = conn.lookupByUUIDString(str(server.id))
    assert domain.isActive()
    volumes = conn.storagePoolLookupByName("default").listVolumes()
    assert {f"{server.id}.qcow2", f"{server.id}-seed.iso"} <= set(volumes)

    detail = api(customer).get(f"/api/v1/servers/{server.pk}/").json()
    assert (detail["image"], detail["ipv4"], detail["status"]) == ("ubuntu-24", [address], "running")


def test_a_rebuild_drops_the_snapshots_of_the_old_disk(api, customer, server, ubuntu, conn):
    for name in ("one", "two"):
        assert act(api, customer, server, type="snapshot", name=name).status == "succeeded"
    assert len(conn.lookupByUUIDString(str(server.id)).snapshotListNames(0)) == 2

    operation = act(api, customer, server, type="rebuild", image="ubuntu-24")

    assert operation.status == "succeeded", operation.error
    assert not Snapshot.objects.filter(server=server).exists()
    assert api(customer).get(f"/api/v1/servers/{server.pk}/snapshots/").json()["count"] == 0


def test_after_a_rebuild_libvirt_lists_no_snapshots_of_the_old_disk(api, customer, server, ubuntu, conn):
    assert act(api, customer, server, type="snapshot", name="old").status == "succeeded"

    assert act(api, customer, server, type="rebuild", image="ubuntu-24").status == "succeeded"

    assert conn.lookupByUUIDString(str(server.id)).snapshotListNames(0) == []


def test_rebuilding_with_the_same_image_reinstalls_it(api, customer, server, catalog):
    operation = act(api, customer, server, type="rebuild", image=catalog["image"].slug)

    assert operation.status == "succeeded", operation.error
    assert fresh(server).image == catalog["image"]


def test_an_image_too_big_for_the_disk_is_refused(api, customer, server, catalog):
    Image.objects.create(slug="huge", name="Huge", os_family="debian", virtual_size_bytes=3 * 1024**3 + 1)

    response = post_action(api, customer, server, type="rebuild", image="huge")

    assert response.status_code == 422, response.content
    assert response.json()["error"]["message"] == "The image Huge needs a disk of at least 4 GiB."
    assert not Operation.objects.filter(server=server, type="rebuild").exists()
    server = fresh(server)
    assert (server.image, server.task, server.status) == (catalog["image"], None, "running")


@pytest.mark.parametrize(
    "body, status",
    [({}, 400), ({"image": "no-such-image"}, 422), ({"image": "retired"}, 422)],
    ids=["missing", "unknown", "not-available"],
)
def test_a_missing_unknown_or_retired_image_is_refused(api, customer, server, body, status):
    Image.objects.create(slug="retired", name="Retired", os_family="debian", is_active=False)

    response = post_action(api, customer, server, type="rebuild", **body)

    assert response.status_code == status, response.content
    if status == 400:
        assert list(response.json()["error"]["fields"]) == ["image"]
    assert not Operation.objects.filter(server=server, type="rebuild").exists()
    assert fresh(server).task is None


def test_another_customer_cannot_rebuild_the_server(api, other_customer, server, ubuntu):
    assert post_action(api, other_customer, server, type="rebuild", image="ubuntu-24").status_code == 404
    assert not Operation.objects.filter(server=server, type="rebuild").exists()


def test_a_server_in_error_can_be_rebuilt(api, customer, server, ubuntu, conn):
    address = server.ipv4[0]
    Server.objects.filter(pk=server.pk).update(status="error", status_reason="Something broke.")

    operation = act(api, customer, server, type="rebuild", image="ubuntu-24")

    assert operation.status == "succeeded", operation.error
    server = fresh(server)
    assert (server.status, server.status_reason, server.task) == ("running", None, None)
    assert server.ipv4 == [address]
    assert conn.lookupByUUIDString(str(server.id)).isActive()


def test_a_server_whose_domain_vanished_is_rebuilt_into_a_new_domain(
    api, customer, server, ubuntu, conn, catalog
):
    address = server.ipv4[0]
    domain = conn.lookupByUUIDString(str(server.id))
    domain.destroy()
    domain.undefine()
    reconcile.reconcile_host(catalog["host"])
    assert fresh(server).status == "error"

    operation = act(api, customer, server, type="rebuild", image="ubuntu-24")

    assert operation.status == "succeeded", operation.error
    server = fresh(server)
    assert (server.status, server.status_reason, server.image) == ("running", None, ubuntu)
    assert server.ipv4 == [address]
    assert conn.lookupByUUIDString(str(server.id)).isActive()


@pytest.mark.parametrize("status", ["pending", "deleting", "deleted", "suspended"])
def test_a_rebuild_is_refused_from_states_that_do_not_allow_it(api, customer, server, ubuntu, status):
    Server.objects.filter(pk=server.pk).update(status=status)

    response = post_action(api, customer, server, type="rebuild", image="ubuntu-24")

    assert response.status_code == 409, response.content
    assert not Operation.objects.filter(server=server, type="rebuild").exists()
