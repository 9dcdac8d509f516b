"""On a real libvirtd the server's interface is bound to its own network filter, `vps-<uuid>`: the live domain
XML references it, `virsh nwfilter-binding-list` lists the binding for the domain's interface, and the host's
bridge firewall (ebtables) drops frames from any other MAC, IPv4 source, or IPv6 source outside the
server's routed /64 (link-local and `::` aside), and router advertisements, redirects and DHCPv6 answers
from any source, while letting IPv6 in. A firewall set through the API reaches
the running domain's host rules (iptables, ip6tables) through a real worker, without a restart: tcp 22 from
203.0.113.0/24 accepted, replies and neighbour discovery let in, the rest dropped, and the guest's own
traffic never dropped. A domain defined before servers had filters of their own (bound to clean-traffic) is
switched to its filter, live and in its definition. The filters go with the domain.

Only rules are inspected: no traffic is sent."""

from __future__ import annotations

import dataclasses
import subprocess

import libvirt
import pytest
from lxml import etree

from hypervisor import driver, ipam
from panel.models import Firewall, Operation, Server
from panel.servers import actions, operations
from tests import factories
from tests.conftest import wait_for

pytestmark = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]
URI = "qemu:///system"


def virsh(*args: str) -> str:
    result = subprocess.run(
        ["virsh", "-c", URI, *args], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout


def command(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30, check=True).stdout


def listed_bindings() -> dict[str, str]:
    """`virsh nwfilter-binding-list`: interface (port dev) -> filter."""
    rows = {}
    for line in virsh("nwfilter-binding-list").splitlines()[2:]:
        parts = line.split()
        if len(parts) == 2:
            rows[parts[0]] = parts[1]
    return rows


def interface_element(conn: libvirt.virConnect, server: Server, flags: int = 0) -> etree._Element:
    root = etree.fromstring(conn.lookupByUUIDString(str(server.id)).XMLDesc(flags).encode())
    interfaces = root.findall("devices/interface")
    assert len(interfaces) == 1
    return interfaces[0]


def ebtables_chains() -> dict[str, list[str]]:
    """ebtables' nat table (libvirt's chains for frames from and to guests), chain -> rules."""
    chains = {}
    for block in command("ebtables", "-t", "nat", "-L").split("\n\n"):
        lines = block.strip().splitlines()
        if lines and lines[0].startswith("Bridge chain: "):
            chains[lines[0].split()[2].rstrip(",")] = lines[1:]
    return chains


def chain_rules(tool: str, chain: str) -> list[str]:
    """The rules of one of libvirt's per-interface chains (FO-<dev>: to the guest; FI-<dev>: from it)."""
    return [line for line in command(tool, "-S").splitlines() if line.startswith(f"-A {chain} ")]


def assert_bound(conn: libvirt.virConnect, server: Server, network: str) -> str:
    """Live XML, binding list, the binding itself and the bridge firewall; returns the port dev."""
    address, mac, name = server.ipv4[0], server.mac, f"vps-{server.id}"
    for flags in (0, libvirt.VIR_DOMAIN_XML_INACTIVE):  # live, and the definition its next start takes
        interface = interface_element(conn, server, flags)
        assert interface.find("mac").get("address") == mac
        assert interface.find("filterref").get("filter") == name
        assert interface.findall("filterref/parameter") == []

    dev = interface_element(conn, server).find("target").get("dev")
    assert listed_bindings().get(dev) == name
    binding = etree.fromstring(conn.nwfilterBindingLookupByPortDev(dev).XMLDesc(0).encode())
    assert binding.find("owner/uuid").text == str(server.id)
    assert binding.find("mac").get("address") == mac
    assert binding.find("filterref").get("filter") == name

    rules = command("ebtables", "-t", "nat", "-L")
    assert f"-i {dev} -j libvirt-I-{dev}" in rules
    chains = ebtables_chains()
    assert chains[f"I-{dev}-mac"] == [f"-s {mac} -j RETURN", "-j DROP"]
    assert f"-p IPv4 --ip-src {address} -j RETURN" in chains[f"I-{dev}-ipv4-ip"]
    assert chains[f"I-{dev}-ipv4-ip"][-1] == "-j DROP"
    assert f"-p ARP --arp-ip-src {address} -j RETURN" in chains[f"I-{dev}-arp-ip"]
    # IPv6 from the guest: never a router advertisement, a redirect or a DHCPv6 answer; then link-local,
    # `::` and its own /64 only; IPv6 to it: accepted.
    assert chains[f"I-{dev}-ipv6-ip"] == [
        "-p IPv6 --ip6-proto ipv6-icmp --ip6-icmp-type router-advertisement -j DROP",
        "-p IPv6 --ip6-proto ipv6-icmp --ip6-icmp-type redirect -j DROP",
        "-p IPv6 --ip6-proto udp --ip6-sport 547 -j DROP",
        "-p IPv6 --ip6-src fe80::/10 -j RETURN",
        "-p IPv6 --ip6-src :: -j RETURN",
        f"-p IPv6 --ip6-src {network} -j RETURN",
        "-j DROP",
    ]
    assert "-p IPv6 -j ACCEPT" in chains[f"libvirt-I-{dev}"]
    assert chains[f"O-{dev}-ipv6"] == ["-j ACCEPT"]
    assert chains[f"libvirt-I-{dev}"][-1] == "-j DROP"  # no other layer-2 protocol
    return dev


def run(operation: Operation) -> Server:
    """Runs the operation here; when the test's Celery worker took its message first, waits for it there."""
    operations.execute(str(operation.pk))

    def finished():
        operation.refresh_from_db()
        return operation.is_finished

    wait_for(finished, timeout=300, message="the operation did not finish")
    assert operation.status == Operation.Status.SUCCEEDED, (operation.error, operation.detail)
    return Server.objects.get(pk=operation.server_id)


def applied(server: Server):
    def check():
        row = Firewall.objects.get(pk=server.pk)
        return row if not row.pending else None

    return wait_for(check, timeout=60, message="the worker did not apply the firewall")


def test_the_running_domain_is_bound_to_its_own_filter_and_takes_firewall_changes_live(
    customer, api, celery_worker
):
    region = factories.make_region()
    host = factories.make_host(uri=URI, region=region, force_emulation=True)
    assert host.state == host.State.READY, host.status_reason
    ipam.create_pool(
        region, "filtered", "192.168.122.0/24", "192.168.122.1", excluded=["192.168.122.2-192.168.122.229"]
    )
    ipam.create_pool(region, "filtered-v6", "2001:db8:42::/48", "2001:db8:42::1")
    plan = factories.make_plan(slug="filtered", vcpus=1, memory_mib=128, disk_gib=1)
    image = factories.make_image()
    server = actions.order_server(customer, name="filtered1", plan=plan, image=image, region=region)
    conn = libvirt.open(URI)
    dev = ""
    try:
        server = run(Operation.objects.get(server=server, type=Operation.Type.CREATE))
        assert server.status == "running", server.status_reason
        assert server.ipv4 and server.ipv4[0].startswith("192.168.122.")
        [network] = [row.assigned_network for row in server.ipv6_addresses]
        assert network.endswith("/64")

        # A domain defined before servers had filters of their own: clean-traffic with its address.
        server = run(actions.request_action(server, Operation.Type.POWER_OFF, customer))
        request = dataclasses.replace(operations.domain_request(server), network_filter=None)
        disk = driver.disk_path(host, request)
        driver.define_domain(host, request, disk, replace=True)
        driver.remove_network_filters(host, server.id)
        server = run(actions.request_action(server, Operation.Type.START, customer))
        dev = interface_element(conn, server).find("target").get("dev")
        assert listed_bindings().get(dev) == "clean-traffic"
        domain_id = conn.lookupByUUIDString(str(server.id)).ID()

        # Any change of its filter (here: the firewall's default, unchanged in effect) switches it, live.
        response = api(customer).put(
            f"/api/v1/servers/{server.pk}/firewall/",
            {"inbound": [], "default_inbound": "accept"},
            format="json",
        )
        assert response.status_code == 202, response.content
        applied(server)
        dev = assert_bound(conn, server, network)
        assert conn.lookupByUUIDString(str(server.id)).ID() == domain_id  # not restarted
        assert chain_rules("iptables", f"FO-{dev}") == []  # accept: no firewall rules at all

        # The firewall reaches the running domain's host rules through the worker.
        rules = {
            "inbound": [
                {"protocol": "tcp", "ports": "22", "sources": ["203.0.113.0/24"]},
                {"protocol": "tcp", "ports": "8000-8100", "sources": ["2001:db8:ff::/48"]},
            ],
            "default_inbound": "drop",
        }
        response = api(customer).put(f"/api/v1/servers/{server.pk}/firewall/", rules, format="json")
        assert response.status_code == 202, response.content
        assert response.json()["applied"] is False
        row = applied(server)
        assert row.apply_error == ""
        assert conn.lookupByUUIDString(str(server.id)).ID() == domain_id
        assert listed_bindings().get(dev) == f"vps-{server.id}"

        inbound = chain_rules("iptables", f"FO-{dev}")
        assert f"-A FO-{dev} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT" in inbound
        assert f"-A FO-{dev} -p udp -m udp --sport 67 --dport 68 -j ACCEPT" in inbound
        assert f"-A FO-{dev} -s 203.0.113.0/24 -p tcp -m tcp --dport 22 -j ACCEPT" in inbound
        assert inbound[-1] == f"-A FO-{dev} -j DROP"
        inbound6 = chain_rules("ip6tables", f"FO-{dev}")
        assert f"-A FO-{dev} -s 2001:db8:ff::/48 -p tcp -m tcp --dport 8000:8100 -j ACCEPT" in inbound6
        for kind in (133, 134, 135, 136, 137):
            assert f"-A FO-{dev} -p ipv6-icmp -m icmp6 --icmpv6-type {kind} -j ACCEPT" in inbound6
        assert f"-A FO-{dev} -p udp -m udp --sport 547 --dport 546 -j ACCEPT" in inbound6
        assert inbound6[-1] == f"-A FO-{dev} -j DROP"
        for tool in ("iptables", "ip6tables"):  # what the guest sends is never dropped here
            assert not [rule for rule in chain_rules(tool, f"FI-{dev}") if "DROP" in rule]
            assert not [rule for rule in chain_rules(tool, f"HI-{dev}") if "DROP" in rule]
        assert_bound(conn, server, network)  # anti-spoofing unchanged

        # Back to accept: the firewall's rules leave the host, the domain still runs.
        response = api(customer).put(
            f"/api/v1/servers/{server.pk}/firewall/",
            {"inbound": [], "default_inbound": "accept"},
            format="json",
        )
        assert response.status_code == 202
        applied(server)
        assert chain_rules("iptables", f"FO-{dev}") == [] and chain_rules("ip6tables", f"FO-{dev}") == []
        assert conn.lookupByUUIDString(str(server.id)).ID() == domain_id
    finally:
        server = run(actions.delete_server(Server.objects.get(pk=server.pk), customer))
        conn.close()
    assert server.status == "deleted"
    assert dev not in listed_bindings()
    names = virsh("nwfilter-list")
    assert f"vps-{server.id}" not in names  # the filters went with the domain
