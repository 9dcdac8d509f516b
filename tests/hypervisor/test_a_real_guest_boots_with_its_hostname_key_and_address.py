"""The whole create path on a real libvirtd with a real guest: the image is copied to the host, the
server boots it (direct kernel boot, QEMU emulation as on this machine) with the cloud-init seed the
panel built, and the guest comes up with the ordered hostname, SSH key and static addresses: its IPv4
address and its routed IPv6 /64 (cloud-init's network table on the console lists both on eth0)."""

import base64
import hashlib
import re
import time
from pathlib import Path

import libvirt
import pytest

from hypervisor import images, ipam
from panel.models import Operation
from panel.servers import actions, operations
from tests import factories

pytestmark = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]
URI = "qemu:///system"
BOOT_TIMEOUT = 240


def sha256_fingerprint_hex(public_key: str) -> str:
    """How cloud-init prints an authorized key's fingerprint on the console (sha256, colon-separated)."""
    digest = hashlib.sha256(base64.b64decode(public_key.split()[1])).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def wait_for_console(path: Path, patterns: list[re.Pattern], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if all(p.search(text) for p in patterns):
            return text
        time.sleep(2)
    missing = [p.pattern for p in patterns if not p.search(text)]
    pytest.fail(
        f"the guest console never showed {missing}; last lines:\n" + "\n".join(text.splitlines()[-30:])
    )


def test_an_ordered_server_boots_with_its_hostname_key_and_address(guest_image, customer, settings):
    settings.SHUTDOWN_TIMEOUT = 60
    settings.IMAGE_DIR = guest_image.disk.parent  # the cached build's directory holds all three files
    region = factories.make_region()
    host = factories.make_host(uri=URI, region=region, force_emulation=True)
    assert host.domain_type == "qemu"
    pool = ipam.create_pool(
        region, "test", "192.168.122.0/24", "192.168.122.1",
        nameservers=["192.168.122.1"], excluded=["192.168.122.2-192.168.122.199"],
    )  # fmt: skip
    ipam.create_pool(region, "test-v6", "fd00:5eed::/56", "fe80::1")  # a /64 routed to each server
    image = images.register_image(
        "debian-test", str(guest_image.disk), name="Debian test", os_family="debian",
        kernel=str(guest_image.kernel), initrd=str(guest_image.initrd), cmdline=guest_image.cmdline,
    )  # fmt: skip
    plan = factories.make_plan(slug="boot", vcpus=1, memory_mib=512, disk_gib=3)
    key = factories.make_ssh_key(customer)
    server = actions.order_server(
        customer, name="toko.example.id", plan=plan, image=image, region=region, ssh_keys=[key],
        password="a good root password",
    )  # fmt: skip
    conn = libvirt.open(URI)
    try:
        operations.execute(str(Operation.objects.get(server=server, type="create").pk))
        server.refresh_from_db()
        assert server.status == "running", server.status_reason
        address = server.ipv4[0]
        assert address.startswith("192.168.122.") and pool.addresses.filter(address=address).exists()
        (ipv6,) = server.ipv6
        assert ipv6.startswith("fd00:5eed:") and ipv6.endswith("::1")

        console = Path(f"/var/log/libvirt/qemu/{server.domain_name}-console.log")
        text = wait_for_console(
            console,
            [
                re.compile(r"toko login:"),
                re.compile(r"Cloud-init v\. \S+ finished at .*DataSourceNoCloud"),
                re.compile(re.escape(sha256_fingerprint_hex(key.public_key))),
                re.compile(re.escape(address)),
                # cloud-init's "Net device info" table: eth0 with the server's IPv6 address as a /64
                re.compile(r"eth0\s*\|\s*True\s*\|\s*" + re.escape(ipv6) + r"/64"),
            ],
            BOOT_TIMEOUT,
        )
        assert "Authorized keys from /root/.ssh/authorized_keys for user root" in text

        # A graceful shutdown reaches the guest through ACPI.
        shutdown = actions.request_action(server, "shutdown", customer)
        operations.execute(str(shutdown.pk))
        server.refresh_from_db()
        assert (server.status, server.status_reason) == ("stopped", None)
    finally:
        delete = Operation.objects.filter(server=server, type="delete").first()
        server.refresh_from_db()
        if server.task is None and server.status != "deleted":
            delete = actions.delete_server(server, customer)
            operations.execute(str(delete.pk))
        try:
            domain = conn.lookupByUUIDString(str(server.id))
            if domain.isActive():
                domain.destroy()
            domain.undefine()
        except libvirt.libvirtError:
            pass
        for name in [
            images.volume_name(image, kind, checksum) for kind, _path, checksum in images.files_of(image)
        ]:
            try:
                conn.storagePoolLookupByName("default").storageVolLookupByName(name).delete(0)
            except libvirt.libvirtError:
                pass
        conn.close()
