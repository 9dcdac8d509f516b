"""On a real libvirtd the server's interface is bound to clean-traffic with its own address and MAC: the
live domain XML has the filter, `virsh nwfilter-binding-list` lists the binding for the domain's interface,
and the host's bridge firewall drops frames from any other MAC or IPv4 address. The binding follows the
domain through a restart and a rebuild and goes with it."""

from __future__ import annotations

import subprocess

import libvirt
import pytest
from lxml import etree

from hypervisor import ipam
from panel.models import Operation, Server
from panel.servers import actions, operations
from tests import factories

pytestmark = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]
URI = "qemu:///system"


def virsh(*args: str) -> str:
    result = subprocess.run(
        ["virsh", "-c", URI, *args], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout


def listed_bindings() -> dict[str, str]:
    """`virsh nwfilter-binding-list`: interface (port dev) -> filter."""
    rows = {}
    for line in virsh("nwfilter-binding-list").splitlines()[2:]:
        parts = line.split()
        if len(parts) == 2:
            rows[parts[0]] = parts[1]
    return rows


def live_interface(conn: libvirt.virConnect, server: Server) -> etree._Element:
    root = etree.fromstring(conn.lookupByUUIDString(str(server.id)).XMLDesc(0).encode())
    interfaces = root.findall("devices/interface")
    assert len(interfaces) == 1
    return interfaces[0]


def assert_bound(conn: libvirt.virConnect, server: Server) -> str:
    """The live XML, the binding list, the binding itself and the firewall rules; returns the port dev."""
    address, mac = server.ipv4[0], server.mac
    interface = live_interface(conn, server)
    assert interface.find("mac").get("address") == mac
    filterref = interface.find("filterref")
    assert filterref is not None and filterref.get("filter") == "clean-traffic"
    assert [(p.get("name"), p.get("value")) for p in filterref] == [("IP", address)]

    dev = interface.find("target").get("dev")
    assert listed_bindings().get(dev) == "clean-traffic"
    binding = etree.fromstring(conn.nwfilterBindingLookupByPortDev(dev).XMLDesc(0).encode())
    assert binding.find("owner/uuid").text == str(server.id)
    assert binding.find("mac").get("address") == mac
    parameters = {(p.get("name"), p.get("value")) for p in binding.find("filterref")}
    assert {("IP", address), ("MAC", mac)} <= parameters

    # What the kernel enforces for frames from the guest (ebtables' nat table, libvirt's chains).
    rules = subprocess.run(
        ["ebtables", "-t", "nat", "-L"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert f"-i {dev} -j libvirt-I-{dev}" in rules
    chains = {}
    for block in rules.split("\n\n"):
        lines = block.strip().splitlines()
        if lines and lines[0].startswith("Bridge chain: "):
            chains[lines[0].split()[2].rstrip(",")] = lines[1:]
    assert chains[f"I-{dev}-mac"] == [f"-s {mac} -j RETURN", "-j DROP"]
    assert f"-p IPv4 --ip-src {address} -j RETURN" in chains[f"I-{dev}-ipv4-ip"]
    assert chains[f"I-{dev}-ipv4-ip"][-1] == "-j DROP"
    assert f"-p ARP --arp-ip-src {address} -j RETURN" in chains[f"I-{dev}-arp-ip"]
    return dev


def run(operation: Operation) -> Server:
    operations.execute(str(operation.pk))
    operation.refresh_from_db()
    assert operation.status == Operation.Status.SUCCEEDED, operation.error
    return Server.objects.get(pk=operation.server_id)


def test_the_live_domain_is_bound_to_clean_traffic_with_its_address(customer):
    region = factories.make_region()
    host = factories.make_host(uri=URI, region=region, force_emulation=True)
    assert host.state == host.State.READY, host.status_reason
    ipam.create_pool(
        region, "filtered", "192.168.122.0/24", "192.168.122.1", excluded=["192.168.122.2-192.168.122.229"]
    )
    plan = factories.make_plan(slug="filtered", vcpus=1, memory_mib=128, disk_gib=1)
    image = factories.make_image()
    server = actions.order_server(customer, name="filtered1", plan=plan, image=image, region=region)
    conn = libvirt.open(URI)
    try:
        operations.execute(str(Operation.objects.get(server=server, type=Operation.Type.CREATE).pk))
        server = Server.objects.get(pk=server.pk)
        assert server.status == "running", server.status_reason
        assert server.ipv4 and server.ipv4[0].startswith("192.168.122.")
        assert_bound(conn, server)

        server = run(actions.request_action(server, Operation.Type.POWER_OFF, customer))
        server = run(actions.request_action(server, Operation.Type.START, customer))
        assert_bound(conn, server)

        server = run(actions.rebuild_server(server, image, customer))
        dev = assert_bound(conn, server)
    finally:
        server = run(actions.delete_server(Server.objects.get(pk=server.pk), customer))
        conn.close()
    assert server.status == "deleted"
    assert dev not in listed_bindings()
