"""Plans that no host of a region can take are shown as unavailable there (available: false), regions
without a host taking orders are unavailable, and ordering the unavailable anyway is a 422."""

from __future__ import annotations

import uuid

import pytest

from hypervisor.models import Allocation, Host
from panel.models import Server
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_regions():
    """Jakarta's host fits the small plan only; Singapore's also fits the big one."""
    jakarta = factories.make_region("jakarta", "Jakarta")
    singapore = factories.make_region("singapore", "Singapore")
    small = factories.make_plan("small", vcpus=1, memory_mib=1024, disk_gib=10)
    big = factories.make_plan("big", vcpus=8, memory_mib=16384, disk_gib=200)
    image = factories.make_image()
    small_host = factories.set_host_size(
        factories.make_host(region=jakarta, probe=False), vcpus=4, memory_mib=8192, disk_gib=100
    )
    big_host = factories.set_host_size(
        factories.make_host(region=singapore, probe=False), vcpus=16, memory_mib=32768, disk_gib=500
    )
    return dict(
        jakarta=jakarta,
        singapore=singapore,
        small=small,
        big=big,
        image=image,
        small_host=small_host,
        big_host=big_host,
    )


def availability(client, region: str) -> dict[str, bool]:
    response = client.get("/api/v1/plans/", {"region": region})
    assert response.status_code == 200
    return {plan["slug"]: plan["available"] for plan in response.json()["results"]}


def test_a_plan_too_big_for_every_host_of_a_region_is_unavailable_there_only(api, customer, two_regions):
    client = api(customer)
    assert availability(client, "jakarta") == {"small": True, "big": False}
    assert availability(client, "singapore") == {"small": True, "big": True}
    # Without a region: available where any region can take it.
    everywhere = {p["slug"]: p["available"] for p in client.get("/api/v1/plans/").json()["results"]}
    assert everywhere == {"small": True, "big": True}


def test_an_unknown_region_is_404(api, customer, two_regions):
    response = api(customer).get("/api/v1/plans/", {"region": "atlantis"})
    assert response.status_code == 404


def test_availability_follows_what_is_already_allocated(api, customer, two_regions):
    big_host = two_regions["big_host"]
    # Half of Singapore's host is taken: the big plan still fits once, then not any more.
    Allocation.objects.create(
        consumer_uuid=uuid.uuid4(), host=big_host, vcpus=8, memory_mib=16384, disk_gib=1
    )
    assert availability(api(customer), "singapore")["big"] is True
    Allocation.objects.create(consumer_uuid=uuid.uuid4(), host=big_host, vcpus=1, memory_mib=1, disk_gib=1)
    assert availability(api(customer), "singapore") == {"small": True, "big": False}


@pytest.mark.parametrize(
    "change",
    [dict(maintenance=True), dict(enabled=False), dict(state=Host.State.DOWN), dict(state=Host.State.ERROR)],
    ids=["maintenance", "disabled", "down", "error"],
)
def test_a_region_whose_only_host_takes_no_orders_is_unavailable(api, customer, two_regions, change):
    Host.objects.filter(pk=two_regions["small_host"].pk).update(**change)
    client = api(customer)
    regions = {r["slug"]: r["available"] for r in client.get("/api/v1/regions/").json()["results"]}
    assert regions == {"jakarta": False, "singapore": True}
    assert availability(client, "jakarta") == {"small": False, "big": False}


def test_a_closed_region_is_unavailable(api, customer, two_regions):
    two_regions["singapore"].is_active = False
    two_regions["singapore"].save()
    regions = {r["slug"]: r["available"] for r in api(customer).get("/api/v1/regions/").json()["results"]}
    assert regions == {"jakarta": True, "singapore": False}


def test_ordering_a_plan_no_host_of_the_region_can_take_is_422(api, customer, two_regions, purge_queue):
    client = api(customer)
    body = {"name": "db1", "plan": "big", "image": two_regions["image"].slug, "region": "jakarta"}
    response = client.post("/api/v1/servers/", body, format="json")
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "out_of_capacity",
        "message": "Out of capacity in this region: no host can take this plan now.",
    }
    assert not Server.objects.exists()
    assert not Allocation.objects.exists()

    # The same plan in a region that can take it is accepted.
    response = client.post("/api/v1/servers/", {**body, "region": "singapore"}, format="json")
    assert response.status_code == 202
    assert Server.objects.get().host == two_regions["big_host"]


def test_without_a_region_the_order_goes_where_the_plan_fits(api, customer, two_regions, purge_queue):
    body = {"name": "db1", "plan": "big", "image": two_regions["image"].slug}
    response = api(customer).post("/api/v1/servers/", body, format="json")
    assert response.status_code == 202
    assert response.json()["region"] == "singapore"
