"""The panel allocates each server's MAC: random (locally administered, unicast), never derived from the
server's UUID, unique under a database constraint (a colliding draw is drawn again), and the same MAC is
in the domain's interface and in the guest's cloud-init network config."""

from __future__ import annotations

import pytest
import yaml
from django.db import IntegrityError, transaction
from lxml import etree

from hypervisor import macs
from hypervisor.cloudinit import read_seed_iso
from panel.models import Server
from panel.servers import actions, guest
from tests import factories

pytestmark = pytest.mark.django_db


def order(customer, catalog, name: str) -> Server:
    return actions.order_server(
        customer, name=name, plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
    )


def test_ordered_servers_get_different_random_macs_unrelated_to_their_uuids(customer, catalog):
    servers = [order(customer, catalog, f"web{i}") for i in range(8)]
    stored = {server.pk: Server.objects.get(pk=server.pk).mac for server in servers}
    assert len(set(stored.values())) == len(servers)
    for server in servers:
        mac = stored[server.pk]
        assert macs.MAC.match(mac)
        first = int(mac[:2], 16)
        assert first & 0x02 and not first & 0x01  # locally administered, unicast
        digits = mac.replace(":", "")
        uuid_hex = server.id.hex
        # Not the old scheme (52:54:00 + the UUID's first 3 bytes), nor any other 3-byte run of the UUID.
        assert not mac.startswith("52:54:00:")
        assert not any(digits[i : i + 6] in uuid_hex for i in range(0, 7, 2))


def test_two_servers_cannot_share_a_mac(customer, catalog):
    first, second = order(customer, catalog, "a1"), order(customer, catalog, "a2")
    with pytest.raises(IntegrityError), transaction.atomic():
        Server.objects.filter(pk=second.pk).update(mac=Server.objects.get(pk=first.pk).mac)
    assert Server.objects.get(pk=second.pk).mac != Server.objects.get(pk=first.pk).mac


def test_a_draw_that_collides_is_drawn_again(customer, catalog, monkeypatch):
    taken = Server.objects.get(pk=order(customer, catalog, "b1").pk).mac
    draws = iter([taken, taken, "02:11:22:33:44:55"])
    monkeypatch.setattr(macs, "random_mac", lambda: next(draws))
    server = order(customer, catalog, "b2")
    assert Server.objects.get(pk=server.pk).mac == "02:11:22:33:44:55"


def test_the_domain_and_the_guest_network_config_use_the_servers_mac(customer, catalog):
    factories.make_pool(catalog["region"], cidr="198.51.100.0/28")
    with factories.TidySimulatedHost(catalog["host"].uri) as conn:
        server = factories.make_real_server(
            customer, plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
        )
        server = Server.objects.get(pk=server.pk)
        root = etree.fromstring(conn.lookupByUUIDString(str(server.id)).XMLDesc(0).encode())
        assert [m.get("address") for m in root.iterfind("devices/interface/mac")] == [server.mac]
    config = yaml.safe_load(read_seed_iso(guest.seed_iso(server))["network-config"])
    network = config.get("network", config)
    (ethernet,) = network["ethernets"].values()
    assert ethernet["match"] == {"macaddress": server.mac}
    assert ethernet["addresses"][0].startswith(server.ipv4[0] + "/")
    assert guest.domain_request(server).mac == server.mac
