"""Additional IPv4 addresses through the API and the server page: a customer adds one (within the
`extra_ipv4` quota and the region's free addresses, billed as an add-on of the server's subscription, the
server's network filter to be brought up to date), sees how to configure it, moves it to another of their
servers in the same region (the billing and the filters follow it) and removes it (back to the pool after
the cool-down, billing stopped). The primary address stays; other customers get 404; a refusal changes
nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import addons
from billing.models import InvoiceLine, SubscriptionAddon
from hypervisor.models import IPAddress
from panel.accounts import quotas
from panel.models import ActivityEvent, Firewall, Server
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def conn(catalog):
    with factories.TidySimulatedHost(catalog["host"].uri) as conn:
        yield conn


@pytest.fixture
def pool(catalog):
    return factories.make_pool(catalog["region"], cidr="198.51.100.0/29")  # 5 usable after the gateway


@pytest.fixture
def priced(db, admin):
    addons.set_addon_price("ipv4", Decimal("30000"), admin)


@pytest.fixture
def admin(db):
    return factories.make_user("admin")


def real_server(customer, catalog, name):
    return factories.make_real_server(
        customer, plan=catalog["plan"], image=catalog["image"], region=catalog["region"], name=name
    )


def addresses_url(server, *rest):
    return "/".join([f"/api/v1/servers/{server.pk}/addresses", *rest, ""])


def active_addon(address: str) -> SubscriptionAddon | None:
    return (
        SubscriptionAddon.objects.filter(key=address, ended_at__isnull=True)
        .select_related("subscription")
        .first()
    )


def test_a_customer_adds_moves_and_removes_an_address_through_the_api(
    api, customer, catalog, pool, conn, priced
):
    web, db_server = real_server(customer, catalog, "web1"), real_server(customer, catalog, "db1")
    versions = {
        pk: Firewall.objects.filter(pk=pk).values_list("version", flat=True).first() or 0
        for pk in (web.pk, db_server.pk)
    }

    added = api(customer).post(addresses_url(web), format="json")
    assert added.status_code == 201, added.content
    body = added.json()
    address = body["ip"]
    assert (body["family"], body["role"], body["network"]) == (4, "additional", f"{address}/32")
    assert f"ip address add {address}/29 dev eth0" == body["configure"]["ip"]
    assert f"addresses: [{address}/29]" in body["configure"]["netplan"]

    server = api(customer).get(f"/api/v1/servers/{web.pk}/").json()
    assert server["ipv4"] == [web.ipv4[0], address]  # the primary first
    listed = api(customer).get(addresses_url(web)).json()
    assert [(row["ip"], row["role"]) for row in listed["results"]] == [
        (web.ipv4[0], "primary"),
        (address, "additional"),
    ]

    addon = active_addon(address)
    assert addon.subscription.reference == str(web.pk) and addon.price == Decimal("30000")
    assert (
        InvoiceLine.objects.filter(kind=InvoiceLine.Kind.ADDON, subscription__reference=str(web.pk)).count()
        == 1
    )
    assert Firewall.objects.get(pk=web.pk).version > versions[web.pk]
    assert ActivityEvent.objects.filter(
        type=ActivityEvent.Type.ADDRESS_CHANGED, target=f"server:{web.pk}"
    ).exists()

    moved = api(customer).post(
        addresses_url(web, address, "move"), {"server": str(db_server.pk)}, format="json"
    )
    assert moved.status_code == 200, moved.content
    assert IPAddress.objects.get(address=address).consumer_uuid == db_server.pk
    assert active_addon(address).subscription.reference == str(db_server.pk)
    assert Firewall.objects.get(pk=db_server.pk).version > versions[db_server.pk]
    assert api(customer).get(f"/api/v1/servers/{web.pk}/").json()["ipv4"] == [web.ipv4[0]]
    assert api(customer).get(f"/api/v1/servers/{db_server.pk}/").json()["ipv4"] == [
        db_server.ipv4[0],
        address,
    ]

    removed = api(customer).delete(addresses_url(db_server, address))
    assert removed.status_code == 204, removed.content
    row = IPAddress.objects.get(address=address)
    assert row.consumer_uuid is None and row.released_at is not None  # cooling down
    assert active_addon(address) is None
    assert api(customer).get(f"/api/v1/servers/{db_server.pk}/").json()["ipv4"] == [db_server.ipv4[0]]


def test_the_primary_address_cannot_be_removed_or_moved(api, customer, catalog, pool, conn):
    web, other = real_server(customer, catalog, "web1"), real_server(customer, catalog, "web2")
    primary = web.ipv4[0]
    assert api(customer).delete(addresses_url(web, primary)).status_code == 409
    response = api(customer).post(
        addresses_url(web, primary, "move"), {"server": str(other.pk)}, format="json"
    )
    assert response.status_code == 409
    assert IPAddress.objects.get(address=primary).consumer_uuid == web.pk


def test_the_quota_and_the_pool_bound_what_can_be_added_and_a_refusal_changes_nothing(
    api, customer, catalog, pool, conn, priced
):
    web = real_server(customer, catalog, "web1")
    quotas.set_limits(customer, {"extra_ipv4": 1})
    assert api(customer).post(addresses_url(web), format="json").status_code == 201
    over = api(customer).post(addresses_url(web), format="json")
    assert over.status_code == 422 and over.json()["error"]["code"] == "over_quota"
    assert IPAddress.objects.filter(consumer_uuid=web.pk).count() == 2

    quotas.set_limits(customer, {"extra_ipv4": None})
    for _ in range(3):  # the /29's five usable addresses: the primary, one additional, then three more
        assert api(customer).post(addresses_url(web), format="json").status_code == 201
    lines = InvoiceLine.objects.filter(kind=InvoiceLine.Kind.ADDON).count()
    full = api(customer).post(addresses_url(web), format="json")
    assert full.status_code == 422 and full.json()["error"]["code"] == "out_of_addresses"
    assert InvoiceLine.objects.filter(kind=InvoiceLine.Kind.ADDON).count() == lines
    assert SubscriptionAddon.objects.filter(ended_at__isnull=True).count() == 4


def test_moves_stay_within_the_customers_servers_of_the_region(
    api, customer, other_customer, catalog, pool, conn
):
    web = real_server(customer, catalog, "web1")
    theirs = real_server(other_customer, catalog, "theirs")
    address = api(customer).post(addresses_url(web), format="json").json()["ip"]

    to_theirs = api(customer).post(
        addresses_url(web, address, "move"), {"server": str(theirs.pk)}, format="json"
    )
    assert to_theirs.status_code == 404
    elsewhere = factories.make_region("surabaya", "Surabaya")
    far = factories.make_server(customer, {**catalog, "region": elsewhere}, name="far")
    to_far = api(customer).post(addresses_url(web, address, "move"), {"server": str(far.pk)}, format="json")
    assert to_far.status_code == 422
    assert IPAddress.objects.get(address=address).consumer_uuid == web.pk

    # Another customer sees none of it.
    assert api(other_customer).get(addresses_url(web)).status_code == 404
    assert api(other_customer).post(addresses_url(web), format="json").status_code == 404
    assert api(other_customer).delete(addresses_url(web, address)).status_code == 404
    assert IPAddress.objects.get(address=address).consumer_uuid == web.pk


def test_the_server_page_adds_shows_how_to_configure_and_removes_an_address(
    client, customer, catalog, pool, conn, priced
):
    web = real_server(customer, catalog, "web1")
    client.force_login(customer)
    page = client.get(f"/servers/{web.pk}/").content.decode()
    assert "Add an IPv4 address" in page and "per month" in page

    response = client.post(f"/servers/{web.pk}/addresses/add/", follow=True)
    address = IPAddress.objects.get(consumer_uuid=web.pk, role="additional").address
    page = response.content.decode()
    assert f"ip address add {address}/29 dev eth0" in page
    assert "How to configure it in the server" in page

    # Without JavaScript the removal asks on a page of its own first; nothing changes until confirmed.
    asked = client.post(f"/servers/{web.pk}/addresses/remove/", {"address": address})
    assert asked.status_code == 200 and address in asked.content.decode()
    assert IPAddress.objects.get(address=address).consumer_uuid == web.pk
    client.post(f"/servers/{web.pk}/addresses/remove/", {"address": address, "confirmed": "yes"})
    assert IPAddress.objects.get(address=address).consumer_uuid is None

    other = factories.make_user()
    client.force_login(other)
    assert client.post(f"/servers/{web.pk}/addresses/add/").status_code == 404
    assert not IPAddress.objects.filter(consumer_uuid=web.pk, role="additional").exists()


def test_a_deleted_server_gives_its_additional_addresses_back(api, customer, catalog, pool, conn):
    web = real_server(customer, catalog, "web1")
    address = api(customer).post(addresses_url(web), format="json").json()["ip"]
    assert api(customer).delete(f"/api/v1/servers/{web.pk}/").status_code == 202
    factories.run_operation(web.operations.get(type="delete"))
    assert IPAddress.objects.get(address=address).consumer_uuid is None
    assert Server.objects.get(pk=web.pk).status == "deleted"
