"""In a region with an IPv6 pool, an order takes the server's IPv6 address (or routed /64) in the same
transaction as its IPv4 address: the API shows both with the MAC, cloud-init's network config carries
both, a rebuild keeps them, and a deletion releases them with the same cool-down as IPv4. A region whose
IPv6 pool is exhausted refuses the order and keeps nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml

from hypervisor import ipam
from hypervisor.cloudinit import read_seed_iso
from hypervisor.models import IPAddress
from panel.models import Operation, Server
from panel.servers import guest
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def conn(catalog):
    with factories.TidySimulatedHost(catalog["host"].uri) as conn:
        yield conn


@pytest.fixture
def pools(catalog):
    region = catalog["region"]
    ipv4 = factories.make_pool(region, cidr="198.51.100.0/28")
    ipv6 = ipam.create_pool(region, "v6", "2001:db8:10::/60", "fe80::1", nameservers=["2001:db8::53"])
    assert (ipv6.family, ipv6.assignment) == (6, "prefix64")
    return ipv4, ipv6


def order(api, user, catalog, name="web1"):
    return api(user).post(
        "/api/v1/servers/",
        {"name": name, "plan": catalog["plan"].slug, "image": catalog["image"].slug},
        format="json",
    )


def test_an_order_gets_an_ipv6_64_with_its_ipv4_address(api, customer, catalog, pools, conn):
    response = order(api, customer, catalog)
    assert response.status_code == 202, response.content
    body = response.json()
    assert len(body["ipv4"]) == 1 and body["ipv4"][0].startswith("198.51.100.")
    (address,) = body["ipv6"]
    assert address.startswith("2001:db8:10:") and address.endswith("::1")
    assert body["ipv6_networks"] == [address[: -len("1")] + "/64"]
    server = Server.objects.get(pk=body["id"])
    assert body["mac"] == server.mac
    row = IPAddress.objects.get(address=address)
    assert (row.consumer_uuid, row.prefix_length, row.role) == (server.id, 64, "primary")

    factories.run_operation(Operation.objects.get(server=server, type="create"))
    detail = api(customer).get(f"/api/v1/servers/{server.pk}/").json()
    assert (detail["status"], detail["ipv6"], detail["mac"]) == ("running", [address], server.mac)

    network = yaml.safe_load(
        read_seed_iso(guest.seed_iso(Server.objects.get(pk=server.pk)))["network-config"]
    )
    eth0 = network["ethernets"]["eth0"]
    assert eth0["addresses"] == [f"{body['ipv4'][0]}/28", f"{address}/64"]
    assert {"to": "::/0", "via": "fe80::1"} in eth0["routes"]
    assert "2001:db8::53" in eth0["nameservers"]["addresses"]


def test_a_rebuild_keeps_both_addresses_and_a_deletion_releases_them_with_a_cool_down(
    api, customer, catalog, pools, conn, settings
):
    server = factories.make_real_server(
        customer, plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
    )
    ipv4, ipv6 = server.ipv4, server.ipv6
    assert len(ipv6) == 1

    rebuilt = api(customer).post(
        f"/api/v1/servers/{server.pk}/actions/",
        {"type": "rebuild", "image": catalog["image"].slug},
        format="json",
    )
    assert rebuilt.status_code == 202, rebuilt.content
    factories.run_operation(Operation.objects.get(pk=rebuilt.json()["id"]))
    server = Server.objects.get(pk=server.pk)
    assert (server.ipv4, server.ipv6) == (ipv4, ipv6)

    deleted = api(customer).delete(f"/api/v1/servers/{server.pk}/")
    assert deleted.status_code == 202
    factories.run_operation(Operation.objects.get(server=server, type="delete"))
    row = IPAddress.objects.get(address=ipv6[0])
    assert row.consumer_uuid is None and row.released_at is not None

    # Cooling down: the next order gets another /64; once cooled, the lowest free one is the old one again.
    other = order(api, customer, catalog, name="web2").json()
    assert other["ipv6"] != ipv6
    IPAddress.objects.filter(pk=row.pk).update(
        released_at=row.released_at - timedelta(minutes=settings.IPV4_COOLDOWN_MINUTES + 1)
    )
    third = order(api, customer, catalog, name="web3").json()
    assert third["ipv6"] == ipv6


def test_a_region_whose_ipv6_pool_is_exhausted_refuses_the_order_and_keeps_nothing(api, customer, catalog):
    region = catalog["region"]
    factories.make_pool(region, cidr="198.51.100.0/28")
    ipam.create_pool(region, "v6-tiny", "2001:db8:20::/63", "fe80::1")  # two /64s
    for _ in range(2):
        IPAddress.objects.filter(pool__family=6, consumer_uuid__isnull=True).filter(
            pk=IPAddress.objects.filter(pool__family=6, consumer_uuid__isnull=True).values("pk")[:1]
        ).update(consumer_uuid="00000000-0000-0000-0000-000000000001")

    response = order(api, customer, catalog)

    assert response.status_code == 422, response.content
    assert response.json()["error"]["code"] == "out_of_addresses"
    assert not Server.objects.exists()
    assert not IPAddress.objects.filter(pool__family=4, consumer_uuid__isnull=False).exists()
