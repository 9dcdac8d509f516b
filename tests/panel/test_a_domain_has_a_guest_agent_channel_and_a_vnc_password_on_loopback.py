"""On the real libvirtd (qemu:///system): a server's domain has the QEMU guest agent's virtio channel and a
VNC console that listens on the host's loopback only and asks for the domain's own password (RFB security
type 2, never type 1 "None"): what the browser console and password resets build on."""

from __future__ import annotations

import socket

import libvirt
import pytest
from lxml import etree

from hypervisor import secrets
from tests import factories

pytestmark = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]

VNC_AUTH, NO_AUTH = 2, 1


def _security_types(port: int) -> list[int]:
    """The RFB 3.8 handshake up to the server's list of security types."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        version = sock.recv(12)
        assert version.startswith(b"RFB 003."), version
        sock.sendall(b"RFB 003.008\n")
        count = sock.recv(1)[0]
        assert count > 0, "the server refused the connection"
        return list(sock.recv(count))


def test_a_server_gets_the_guest_agent_channel_and_a_password_protected_vnc_on_loopback(
    libvirtd, kvm_host, customer
):
    plan = factories.make_plan(slug="vnc-tiny", vcpus=1, memory_mib=128, disk_gib=1)
    server = factories.make_real_server(
        customer, plan=plan, image=factories.make_image(), region=kvm_host.region, name="vnc.example.com"
    )
    domain = libvirtd.lookupByUUIDString(str(server.id))
    root = etree.fromstring(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE).encode())
    targets = [channel.find("target") for channel in root.findall("devices/channel")]
    assert any(t.get("type") == "virtio" and t.get("name") == "org.qemu.guest_agent.0" for t in targets)

    graphics = root.find("devices/graphics")
    assert graphics.get("type") == "vnc"
    assert graphics.get("listen") == "127.0.0.1"
    assert graphics.get("passwd") == secrets.console_password(server.id)
    assert len(graphics.get("passwd")) == 8
    # Without the secure flag libvirt does not show the password.
    assert etree.fromstring(domain.XMLDesc(0).encode()).find("devices/graphics").get("passwd") is None

    types = _security_types(int(graphics.get("port")))
    assert VNC_AUTH in types and NO_AUTH not in types


def test_the_password_is_the_domains_own():
    first, second = "6f1c0e4e-0000-4000-8000-000000000001", "6f1c0e4e-0000-4000-8000-000000000002"
    assert secrets.console_password(first) == secrets.console_password(first)
    assert secrets.console_password(first) != secrets.console_password(second)
