"""The IP pool pages: admins add IPv6 pools (routed /64s or single addresses) and change a pool's name,
nameservers, excluded addresses and whether it is in use; the pages show each pool's family and assignment
and a routed pool's /64s; bad input is a form error that changes nothing; staff only look."""

from __future__ import annotations

import uuid

import pytest

from hypervisor import ipam
from hypervisor.models import IPAddress, IPPool
from panel.models import ActivityEvent
from tests import factories

pytestmark = pytest.mark.django_db


def text(response) -> str:
    return response.content.decode()


def pool_form(region, **overrides) -> dict:
    return {
        "region": region.pk,
        "name": "",
        "cidr": "2001:db8:100::/62",
        "gateway": "fe80::1",
        "assignment": "",
        "nameservers": "",
        "excluded": "",
        **overrides,
    }


def edit_form(pool: IPPool, **overrides) -> dict:
    data = {
        "name": pool.name,
        "nameservers": ", ".join(pool.nameservers),
        "excluded": "\n".join(pool.excluded),
        **({"is_active": "on"} if pool.is_active else {}),
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


@pytest.fixture
def region():
    return factories.make_region()


def test_an_admin_adds_a_pool_of_routed_64s_and_its_page_lists_them(client, admin_user, region):
    client.force_login(admin_user)
    response = client.post(
        "/staff/ip-pools/",
        pool_form(region, name="v6", nameservers="2606:4700:4700::1111", excluded="2001:db8:100:2::/64"),
        follow=True,
    )
    pool = IPPool.objects.get(name="v6")
    assert (pool.family, pool.assignment) == (6, "prefix64")
    html = text(response)
    assert "The pool v6 was created with 3 routed /64s." in html
    for network in ("2001:db8:100::/64", "2001:db8:100:1::/64", "2001:db8:100:3::/64"):
        assert network in html
    assert "2001:db8:100:2::/64</td>" not in html
    assert "server address 2001:db8:100:1::1" in html
    assert "Routed /64s" in html and "A routed /64 per server" in html and "IPv6" in html

    listing = text(client.get("/staff/ip-pools/"))
    assert "2001:db8:100::/62" in listing and "routed /64s" in listing and "fe80::1" in listing


def test_an_admin_adds_a_pool_of_single_ipv6_addresses(client, admin_user, region):
    client.force_login(admin_user)
    form = pool_form(
        region, name="lan", cidr="2001:db8:200::/120", gateway="2001:db8:200::1", assignment="address"
    )
    response = client.post("/staff/ip-pools/", form, follow=True)
    pool = IPPool.objects.get(name="lan")
    assert (pool.assignment, pool.addresses.count()) == ("address", 254)
    html = text(response)
    assert "The pool lan was created with 254 addresses." in html
    assert "One address per server" in html and "2001:db8:200::2" in html


@pytest.mark.parametrize(
    "overrides,field,message",
    [
        ({"cidr": "2001:db8::/48", "assignment": "address"}, "assignment", "/64 or longer"),
        (
            {"cidr": "192.0.2.0/24", "gateway": "192.0.2.1", "assignment": "prefix64"},
            "assignment",
            "single addresses",
        ),
        ({"gateway": "2001:db9::1"}, "gateway", "must be link-local"),
        ({"cidr": "2001:db8::/40"}, "cidr", "takes a prefix from /44 to /63"),
        ({"excluded": "192.0.2.1"}, "excluded", "is not a /64 like"),
    ],
)
def test_a_bad_ipv6_pool_is_a_form_error_on_its_field_and_creates_nothing(
    client, admin_user, region, overrides, field, message
):
    client.force_login(admin_user)
    response = client.post("/staff/ip-pools/", pool_form(region, **overrides))
    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors[field])
    assert not IPPool.objects.exists() and not IPAddress.objects.exists()


def test_an_admin_changes_a_pool_on_its_page(client, admin_user, region):
    pool = ipam.create_pool(region, "old", "192.0.2.0/29", "192.0.2.1", excluded=["192.0.2.6"])
    client.force_login(admin_user)
    page = text(client.get(f"/staff/ip-pools/{pool.pk}/"))
    assert "Save pool" in page and 'name="excluded"' in page and "192.0.2.6</textarea>" in page
    response = client.post(
        f"/staff/ip-pools/{pool.pk}/",
        edit_form(
            pool,
            name="new",
            nameservers="9.9.9.9 2620:fe::fe",
            excluded="192.0.2.2 - 192.0.2.3",
            is_active=None,
        ),
        follow=True,
    )
    pool.refresh_from_db()
    assert (pool.name, pool.nameservers, pool.excluded, pool.is_active) == (
        "new",
        ["9.9.9.9", "2620:fe::fe"],
        ["192.0.2.2-192.0.2.3"],
        False,
    )
    html = text(response)
    assert "The pool new was saved." in html
    assert html.count("badge--ip-reserved") == 2 and html.count("badge--ip-free") == 3  # .6 is back
    event = ActivityEvent.objects.get(type=ActivityEvent.Type.IP_POOL_CHANGED)
    assert event.actor == admin_user and event.target == f"ip_pool:{pool.pk}" and event.staff_action
    assert "is_active=False" in event.data["changes"] and "name=new" in event.data["changes"]


def test_excluding_an_address_in_use_is_a_form_error_and_changes_nothing(client, admin_user, region):
    pool = ipam.create_pool(region, "p", "192.0.2.0/29", "192.0.2.1")
    ipam.allocate(region, uuid.uuid4())
    client.force_login(admin_user)
    response = client.post(f"/staff/ip-pools/{pool.pk}/", edit_form(pool, name="x", excluded="192.0.2.2"))
    assert response.status_code == 200
    assert response.context["form"].errors["excluded"] == [
        "These addresses are in use and cannot be excluded: 192.0.2.2."
    ]
    pool.refresh_from_db()
    assert (pool.name, pool.excluded) == ("p", [])
    assert not IPAddress.objects.filter(reserved=True).exists()
    assert not ActivityEvent.objects.filter(type=ActivityEvent.Type.IP_POOL_CHANGED).exists()


def test_staff_see_a_pool_but_cannot_change_it_and_customers_get_403(client, staff, customer, region):
    pool = ipam.create_pool(region, "p", "2001:db8::/63", "fe80::1")
    client.force_login(staff)
    page = text(client.get(f"/staff/ip-pools/{pool.pk}/"))
    assert "2001:db8:0:1::/64" in page and "Save pool" not in page and "Change the pool" not in page
    assert "Add a pool" not in text(client.get("/staff/ip-pools/"))
    assert client.post(f"/staff/ip-pools/{pool.pk}/", edit_form(pool, name="mine")).status_code == 403
    client.force_login(customer)
    assert client.post(f"/staff/ip-pools/{pool.pk}/", edit_form(pool, name="mine")).status_code == 403
    assert IPPool.objects.get(pk=pool.pk).name == "p"
