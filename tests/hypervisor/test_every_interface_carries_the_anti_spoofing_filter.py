"""Every server's interface is bound to the server's own network filter, `vps-<uuid>` (anti-spoofing for
IPv4 and IPv6 and its firewall, hypervisor.network_filter), whichever path defined the domain: create,
rebuild, resize; its MAC is the one the panel allocated. The filter lets the guest send from the server's own
IPv4 addresses only. On libvirt's simulated host, which keeps the XML it was given (it has no filter driver:
the filters themselves are checked on a real libvirtd, test_a_real_host_binds_the_anti_spoofing_filter.py)."""

from __future__ import annotations

import pytest
from lxml import etree

from hypervisor import network_filter
from hypervisor.xml.domain import FilterRef, NetworkInterface, clean_traffic
from panel.models import Operation, Server
from panel.servers import firewall
from tests import factories

pytestmark = pytest.mark.django_db


def interface_of(conn, server: Server, flags: int = 0) -> etree._Element:
    root = etree.fromstring(conn.lookupByUUIDString(str(server.id)).XMLDesc(flags).encode())
    interfaces = root.findall("devices/interface")
    assert len(interfaces) == 1
    return interfaces[0]


def parameters(interface: etree._Element) -> list[tuple[str, str]]:
    return [(p.get("name"), p.get("value")) for p in interface.findall("filterref/parameter")]


def assert_filtered(interface: etree._Element, server: Server) -> None:
    filterref = interface.find("filterref")
    assert filterref is not None, etree.tostring(interface, encoding="unicode")
    assert filterref.get("filter") == f"vps-{server.id}"
    assert parameters(interface) == []  # the addresses are in the server's filter itself
    assert interface.find("mac").get("address") == server.mac
    # The filter it references lets the guest send from its own addresses, and answer ARP for them only.
    root = network_filter.root_filter(firewall.filter_spec(server))
    refs = {entry.filter: entry.parameters for entry in root.entries if isinstance(entry, FilterRef)}
    assert refs["no-ip-spoofing"] == [("IP", address) for address in server.ipv4]
    assert refs["no-arp-spoofing"] == [("IP", address) for address in server.ipv4]
    assert {"no-mac-spoofing", "no-other-l2-traffic", "allow-incoming-ipv4"} <= set(refs)


@pytest.fixture
def conn(catalog):
    with factories.TidySimulatedHost(catalog["host"].uri) as conn:
        yield conn


@pytest.fixture
def server(customer, catalog, conn) -> Server:
    factories.make_pool(catalog["region"], cidr="198.51.100.0/28")
    server = factories.make_real_server(
        customer, plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
    )
    assert len(server.ipv4) == 1
    return Server.objects.get(pk=server.pk)


def act(api, user, server: Server, **body) -> None:
    response = api(user).post(f"/api/v1/servers/{server.pk}/actions/", body, format="json")
    assert response.status_code == 202, response.content
    operation = factories.run_operation(Operation.objects.get(pk=response.json()["id"]))
    assert operation.status == Operation.Status.SUCCEEDED, (operation.error, operation.detail)


def test_a_created_server_sends_only_from_its_own_address_and_mac(server, conn):
    assert_filtered(interface_of(conn, server), server)


def test_a_rebuild_defines_the_domain_again_with_the_filter(api, customer, server, conn, catalog):
    act(api, customer, server, type="rebuild", image=catalog["image"].slug)
    assert_filtered(interface_of(conn, server), Server.objects.get(pk=server.pk))


def test_a_resize_keeps_the_filter(api, customer, server, conn):
    bigger = factories.make_plan(slug="bigger", vcpus=2, memory_mib=512, disk_gib=2)
    act(api, customer, server, type="resize", plan=bigger.slug)
    resized = Server.objects.get(pk=server.pk)
    assert resized.plan == bigger
    assert_filtered(interface_of(conn, resized), resized)


def test_a_server_without_a_managed_address_still_gets_the_filter(customer, catalog, conn):
    """No pool in the region: libvirt learns the guest's address from the DHCP answer only, never from the
    first packet the guest sends (which could claim the gateway's address)."""
    server = factories.make_real_server(
        customer, plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
    )
    assert server.ipv4 == []
    interface = interface_of(conn, server)
    assert interface.find("filterref").get("filter") == f"vps-{server.id}"
    assert parameters(interface) == [("CTRL_IP_LEARNING", "dhcp")]
    root = network_filter.root_filter(firewall.filter_spec(server))
    refs = {entry.filter: entry.parameters for entry in root.entries if isinstance(entry, FilterRef)}
    assert refs["no-ip-spoofing"] == [] and refs["no-arp-spoofing"] == []  # $IP: learnt by DHCP snooping


def test_the_stock_filter_takes_one_ip_parameter_per_address_and_only_ipv4():
    """Domains defined before servers had filters of their own reference clean-traffic this way."""
    parent = etree.Element("devices")
    interface = NetworkInterface(mac="52:54:00:00:00:01", filterref=clean_traffic(["192.0.2.5", "192.0.2.6"]))
    element = interface.to_element(parent)
    values = [(p.get("name"), p.get("value")) for p in element.findall("filterref/parameter")]
    assert values == [("IP", "192.0.2.5"), ("IP", "192.0.2.6")]
    with pytest.raises(ValueError):
        clean_traffic(["2001:db8::1"])
    with pytest.raises(ValueError):
        clean_traffic(["192.0.2.5'/><parameter name='IP' value='0.0.0.0/0"])
