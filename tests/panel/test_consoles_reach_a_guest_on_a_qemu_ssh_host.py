"""A remote host through qemu+ssh:// (a private sshd on this machine with the panel's key, the real libvirtd
behind it): the graphical console goes through an SSH tunnel to the VNC server on the host's loopback. (The
serial console of a guest on such a host is proved with its login prompt in
test_a_real_guest_takes_a_new_root_password_and_boots_rescue_mode_with_its_disk.py.)"""

from __future__ import annotations

import pytest
from websockets.sync.client import connect

from hypervisor import ipam
from tests import factories
from tests.console_proxy import running_proxy
from tests.panel.test_a_console_token_opens_its_servers_vnc_once_through_the_proxy import rfb_handshake

pytestmark = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]


def test_the_graphical_console_of_a_server_on_a_qemu_ssh_host_goes_through_a_tunnel(
    ssh_host, customer, settings, tmp_path, api
):
    ipam.create_pool(ssh_host.region, "t", "198.51.100.16/28", "198.51.100.17")
    plan = factories.make_plan(slug="console-remote", vcpus=1, memory_mib=128, disk_gib=1)
    server = factories.make_real_server(
        customer, plan=plan, image=factories.make_image(), region=ssh_host.region, name="remote.example.com"
    )
    assert server.host_id == ssh_host.pk
    with running_proxy(settings, tmp_path):
        vnc = api(customer).post(f"/api/v1/servers/{server.id}/console/", {"type": "vnc"}, format="json")
        assert vnc.status_code == 201, vnc.content
        with connect(vnc.json()["url"], open_timeout=15, max_size=None) as websocket:
            types, width, height, name = rfb_handshake(websocket)
    assert types == [1] and width > 0 and height > 0
    assert name == f"QEMU ({server.domain_name})".encode()  # past the domain's password, through ssh -W
