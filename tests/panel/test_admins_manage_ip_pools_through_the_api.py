"""Admins create and change IPv4 and IPv6 pools through the API (GET, POST admin/ip-pools/; GET, PATCH
admin/ip-pools/{id}/) and read their size, used and free counts; bad input is a 400 naming the field (an
overlap a 409 naming the pool) and creates nothing; staff may only look, customers get 403."""

from __future__ import annotations

import uuid

import pytest

from hypervisor import ipam
from hypervisor.models import IPAddress, IPPool
from panel.models import ActivityEvent
from tests import factories

pytestmark = pytest.mark.django_db

POOLS = "/api/v1/admin/ip-pools/"


@pytest.fixture
def region():
    return factories.make_region()


@pytest.fixture
def admin_api(api, admin_user):
    return api(admin_user)


def create(admin_api, **body) -> dict:
    response = admin_api.post(POOLS, {"region": "jakarta", **body}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_an_admin_creates_an_ipv4_pool_and_reads_its_numbers(admin_api, admin_user, region, settings):
    settings.IPV4_COOLDOWN_MINUTES = 60
    pool = create(
        admin_api,
        name="jkt-public-1",
        cidr="192.0.2.0/28",
        gateway="192.0.2.1",
        nameservers=["192.0.2.53", "2001:4860:4860::8888"],
        excluded=["192.0.2.2-192.0.2.4"],
    )
    assert {key: pool[key] for key in pool if key not in ("id", "created_at")} == {
        "region": "jakarta",
        "name": "jkt-public-1",
        "family": 4,
        "assignment": "address",
        "cidr": "192.0.2.0/28",
        "gateway": "192.0.2.1",
        "nameservers": ["192.0.2.53", "2001:4860:4860::8888"],
        "excluded": ["192.0.2.2-192.0.2.4"],
        "is_active": True,
        "size": 10,  # 16 - network - broadcast - gateway - 3 excluded
        "used": 0,
        "free": 10,
        "cooling": 0,
        "reserved": 0,
    }
    event = ActivityEvent.objects.get(type=ActivityEvent.Type.IP_POOL_CHANGED)
    assert (event.actor, event.target, event.staff_action) == (admin_user, f"ip_pool:{pool['id']}", True)

    # Two servers take an address, one releases it (cooling down), an admin excludes one more.
    held, released = uuid.uuid4(), uuid.uuid4()
    ipam.allocate(region, held)
    ipam.allocate(region, released)
    ipam.release(released)
    ipam.update_pool(IPPool.objects.get(pk=pool["id"]), excluded=["192.0.2.2-192.0.2.4", "192.0.2.14"])
    read = admin_api.get(f"{POOLS}{pool['id']}/").json()
    assert (read["size"], read["used"], read["cooling"], read["reserved"], read["free"]) == (10, 1, 1, 1, 7)


def test_an_admin_creates_ipv6_pools_of_routed_64s_and_of_single_addresses(admin_api, region):
    routed = create(admin_api, name="v6", cidr="2001:db8:100::/56", gateway="fe80::1")
    assert (routed["family"], routed["assignment"], routed["size"], routed["free"]) == (
        6,
        "prefix64",
        256,
        256,
    )
    ipam.allocate_ipv6_if_pooled(region, uuid.uuid4())
    read = admin_api.get(f"{POOLS}{routed['id']}/").json()
    assert (read["used"], read["free"]) == (1, 255)

    single = create(
        admin_api, cidr="2001:db8:200::/64", gateway="2001:db8:200::1", assignment="address", excluded=[]
    )
    assert (single["name"], single["family"], single["assignment"], single["size"]) == (
        "2001:db8:200::/64",
        6,
        "address",
        65536,
    )
    assert IPAddress.objects.filter(pool_id=single["id"], prefix_length=128).count() == 65536


def test_the_list_is_paginated_and_staff_may_read_it(api, admin_api, staff, region):
    ipam.create_pool(region, "a", "192.0.2.0/29", "192.0.2.1")
    ipam.create_pool(region, "b", "2001:db8::/62", "fe80::1")
    for user_api in (admin_api, api(staff)):
        listing = user_api.get(POOLS).json()
        assert listing["count"] == 2 and listing["next"] is None
        assert [pool["name"] for pool in listing["results"]] == ["a", "b"]
        assert [pool["size"] for pool in listing["results"]] == [5, 4]


@pytest.mark.parametrize(
    "body,field",
    [
        ({"cidr": "192.0.2.0/33", "gateway": "192.0.2.1"}, "cidr"),
        ({"cidr": "10.0.0.0/8", "gateway": "10.0.0.1"}, "cidr"),
        ({"cidr": "2001:db8::/40", "gateway": "fe80::1"}, "cidr"),
        ({"cidr": "192.0.2.0/24", "gateway": "198.51.100.1"}, "gateway"),
        ({"cidr": "2001:db8::/48", "gateway": "2001:db9::1"}, "gateway"),
        ({"cidr": "192.0.2.0/24", "gateway": "192.0.2.1", "nameservers": ["dns.example"]}, "nameservers"),
        ({"cidr": "192.0.2.0/24", "gateway": "192.0.2.1", "nameservers": "1.1.1.1"}, "nameservers"),
        ({"cidr": "192.0.2.0/24", "gateway": "192.0.2.1", "excluded": ["10.0.0.1"]}, "excluded"),
        ({"cidr": "2001:db8::/48", "gateway": "fe80::1", "assignment": "address"}, "assignment"),
        ({"cidr": "192.0.2.0/24", "gateway": "192.0.2.1", "assignment": "prefix64"}, "assignment"),
        ({"cidr": "192.0.2.0/24", "gateway": "192.0.2.1", "region": "atlantis"}, "region"),
        ({"gateway": "192.0.2.1"}, "cidr"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_creates_nothing(admin_api, region, body, field):
    response = admin_api.post(POOLS, {"region": "jakarta", "name": "bad", **body}, format="json")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert list(error["fields"]) == [field], error
    assert error["message"].startswith(f"{field}: ")
    assert not IPPool.objects.exists() and not IPAddress.objects.exists()
    assert not ActivityEvent.objects.filter(type=ActivityEvent.Type.IP_POOL_CHANGED).exists()


def test_an_overlap_is_a_409_naming_the_pool(admin_api, region):
    first = create(admin_api, name="v6", cidr="2001:db8::/48", gateway="fe80::1")
    response = admin_api.post(
        POOLS, {"region": "jakarta", "cidr": "2001:db8:0:100::/56", "gateway": "fe80::1"}, format="json"
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "overlap"
    assert "overlaps the pool v6 (2001:db8::/48)" in error["fields"]["cidr"][0]
    assert IPPool.objects.get().pk == first["id"]
    # The same network as an IPv4 pool does not overlap: the families are never compared.
    create(admin_api, cidr="192.0.2.0/24", gateway="192.0.2.1")


def test_an_admin_changes_name_nameservers_excluded_and_use(admin_api, admin_user, region):
    pool = create(admin_api, name="old", cidr="192.0.2.0/29", gateway="192.0.2.1")
    response = admin_api.patch(
        f"{POOLS}{pool['id']}/",
        {"name": "new", "nameservers": ["9.9.9.9"], "excluded": ["192.0.2.6"], "is_active": False},
        format="json",
    )
    assert response.status_code == 200, response.json()
    changed = response.json()
    assert (changed["name"], changed["nameservers"], changed["excluded"], changed["is_active"]) == (
        "new",
        ["9.9.9.9"],
        ["192.0.2.6"],
        False,
    )
    assert (changed["size"], changed["reserved"], changed["free"]) == (5, 1, 4)
    event = ActivityEvent.objects.filter(type=ActivityEvent.Type.IP_POOL_CHANGED).latest("at")
    assert event.actor == admin_user and "excluded=[192.0.2.6]" in event.data["changes"]

    # A client that sends back what it read may send the fixed fields unchanged.
    same = admin_api.patch(f"{POOLS}{pool['id']}/", {**changed, "name": "newer"}, format="json")
    assert same.status_code == 200, same.json()
    assert same.json()["name"] == "newer"


def test_network_gateway_region_and_assignment_cannot_change(admin_api, region):
    factories.make_region("bali", "Bali")
    pool = create(admin_api, name="p", cidr="192.0.2.0/29", gateway="192.0.2.1")
    for body in (
        {"cidr": "192.0.2.0/28"},
        {"gateway": "192.0.2.6"},
        {"region": "bali"},
        {"assignment": "prefix64"},
        {"name": "renamed", "cidr": "198.51.100.0/29"},
    ):
        response = admin_api.patch(f"{POOLS}{pool['id']}/", body, format="json")
        assert response.status_code == 400, body
        field = [key for key in body if key != "name"][0]
        assert list(response.json()["error"]["fields"]) == [field]
    stored = IPPool.objects.get(pk=pool["id"])
    assert (stored.name, stored.cidr, stored.gateway, stored.region.slug) == (
        "p",
        "192.0.2.0/29",
        "192.0.2.1",
        "jakarta",
    )


def test_excluding_an_address_in_use_is_a_400_naming_it_and_changes_nothing(admin_api, region):
    pool = create(admin_api, name="p", cidr="192.0.2.0/29", gateway="192.0.2.1")
    ipam.allocate(region, uuid.uuid4())
    response = admin_api.patch(
        f"{POOLS}{pool['id']}/", {"name": "x", "excluded": ["192.0.2.2-192.0.2.3"]}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "excluded": ["These addresses are in use and cannot be excluded: 192.0.2.2."]
    }
    stored = IPPool.objects.get(pk=pool["id"])
    assert (stored.name, stored.excluded) == ("p", [])
    assert not IPAddress.objects.filter(reserved=True).exists()


def test_staff_may_read_but_not_create_or_change_pools(api, staff, region):
    pool = ipam.create_pool(region, "p", "192.0.2.0/29", "192.0.2.1")
    staff_api = api(staff)
    assert staff_api.get(f"{POOLS}{pool.pk}/").json()["size"] == 5
    response = staff_api.post(
        POOLS, {"region": "jakarta", "cidr": "198.51.100.0/29", "gateway": "198.51.100.1"}
    )
    assert response.status_code == 403
    assert staff_api.patch(f"{POOLS}{pool.pk}/", {"name": "mine"}, format="json").status_code == 403
    assert IPPool.objects.get().name == "p"


def test_customers_get_403_and_unknown_pools_404(api, admin_api, customer, region):
    pool = ipam.create_pool(region, "p", "192.0.2.0/29", "192.0.2.1")
    customer_api = api(customer)
    assert customer_api.get(POOLS).status_code == 403
    assert customer_api.get(f"{POOLS}{pool.pk}/").status_code == 403
    assert customer_api.post(POOLS, {"region": "jakarta", "cidr": "198.51.100.0/29"}).status_code == 403
    assert customer_api.patch(f"{POOLS}{pool.pk}/", {"name": "x"}, format="json").status_code == 403
    assert admin_api.get(f"{POOLS}{pool.pk + 1000}/").status_code == 404
    assert IPPool.objects.get().name == "p"
