"""A remote host through qemu+ssh:// (a private sshd on this machine with the panel's key, the real libvirtd
behind it): the graphical console goes through an SSH tunnel to the VNC server on the host's loopback, and
the serial console through libvirt's console stream, which shows the booted test guest's login prompt."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import libvirt
import pytest
from websockets.sync.client import connect

from hypervisor import connection, credentials, hosts, images, ipam
from hypervisor.models import Host
from tests import factories
from tests.console_proxy import running_proxy
from tests.panel.test_a_console_token_opens_its_servers_vnc_once_through_the_proxy import rfb_handshake
from tests.sshd import SSHD, Sshd

pytestmark = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]

BOOT_TIMEOUT = 240


@pytest.fixture
def ssh_host(tmp_path, settings, libvirtd):
    if not Path(SSHD).exists():
        pytest.fail("openssh-server is missing: apt-get install -y openssh-server")
    # A short PANEL_DATA_DIR: ssh's control paths and key files live under it.
    settings.DATA_DIR = Path(tempfile.mkdtemp(prefix="vps", dir="/tmp"))
    sshd = Sshd(tmp_path / "sshd")
    sshd.start()
    host = hosts.register_host("kvm-remote", sshd.uri, factories.make_region())
    hosts.probe_host(host.pk)  # records the host's SSH key (trust on first use)
    sshd.authorize(credentials.authorized_keys_line())
    Host.objects.filter(pk=host.pk).update(force_emulation=True)
    host = hosts.probe_host(host.pk)
    assert host.state == Host.State.READY, host.status_reason
    ipam.create_pool(host.region, "t", "198.51.100.16/28", "198.51.100.17")
    yield host
    connection.forget(host.uri)
    sshd.stop()
    shutil.rmtree(settings.DATA_DIR, ignore_errors=True)


def remove_image_volumes(image) -> None:
    conn = libvirt.open("qemu:///system")
    try:
        pool = conn.storagePoolLookupByName("default")
        for kind, _path, checksum in images.files_of(image):
            try:
                pool.storageVolLookupByName(images.volume_name(image, kind, checksum)).delete(0)
            except libvirt.libvirtError:
                pass
    finally:
        conn.close()


def read_until(websocket, text: bytes, timeout: float, poke: bytes = b"\r") -> bytes:
    """Read the serial console until `text` shows, pressing Enter now and then (a getty that started before
    we connected printed its prompt already)."""
    seen = b""
    deadline = time.monotonic() + timeout
    next_poke = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() >= next_poke:
            websocket.send(poke)
            next_poke = time.monotonic() + 10
        try:
            seen += websocket.recv(timeout=2)
        except TimeoutError:
            continue
        if text in seen:
            return seen
    pytest.fail(
        f"the serial console never showed {text!r}; last output:\n{seen[-2000:].decode(errors='replace')}"
    )


def test_both_consoles_of_a_guest_on_a_qemu_ssh_host(
    ssh_host, guest_image, customer, settings, tmp_path, api
):
    settings.IMAGE_DIR = guest_image.disk.parent
    image = images.register_image(
        "debian-console", str(guest_image.disk), name="Debian test", os_family="debian",
        kernel=str(guest_image.kernel), initrd=str(guest_image.initrd), cmdline=guest_image.cmdline,
    )  # fmt: skip
    plan = factories.make_plan(slug="console-boot", vcpus=1, memory_mib=512, disk_gib=3)
    try:
        server = factories.make_real_server(
            customer, plan=plan, image=image, region=ssh_host.region, name="remote.example.com",
            ssh_keys=[factories.make_ssh_key(customer)],
        )  # fmt: skip
        assert server.host_id == ssh_host.pk
        with running_proxy(settings, tmp_path):
            vnc = api(customer).post(f"/api/v1/servers/{server.id}/console/", {"type": "vnc"}, format="json")
            assert vnc.status_code == 201, vnc.content
            with connect(vnc.json()["url"], open_timeout=15, max_size=None) as websocket:
                types, width, height, name = rfb_handshake(websocket)
            assert types == [1] and width > 0
            assert name == f"QEMU ({server.domain_name})".encode()

            serial = api(customer).post(
                f"/api/v1/servers/{server.id}/console/", {"type": "serial"}, format="json"
            )
            assert serial.status_code == 201, serial.content
            with connect(serial.json()["url"], open_timeout=15) as websocket:
                output = read_until(websocket, b"remote login:", BOOT_TIMEOUT)
            assert b"Debian GNU/Linux 12" in output or b"login:" in output
    finally:
        remove_image_volumes(image)
