"""On the real libvirtd (qemu:///system), with a real Celery worker process: an admin registers a small real
ISO made here (bootable: El Torito, a boot sector that writes to the serial port), a customer attaches it
to their running server, and the server is powered off and started again with the ISO's base volume in a
read-only CD-ROM drive booted first: it runs the ISO's boot code, and can be snapshotted meanwhile.
Detaching it removes the drive, the server runs from its disk again, and the ISO stays on the host for
others."""

from __future__ import annotations

import io
import time
from pathlib import Path

import libvirt
import pycdlib
import pytest

from hypervisor import images
from hypervisor.models import BaseVolume, Image
from hypervisor.xml.domain import parse
from panel.models import Operation
from panel.servers import actions
from tests import factories
from tests.real_workers import find_pool

pytestmark = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]

MESSAGE = b"ISO-BOOTED"


def boot_sector(message: bytes) -> bytes:
    """x86 real-mode code that writes `message` to COM1 and halts (loaded at 0x7C00 by the BIOS)."""
    head = bytes([0xFA, 0xFC, 0x31, 0xC0, 0x8E, 0xD8])  # cli; cld; xor ax,ax; mov ds,ax
    text_at = 0x7C00 + len(head) + 3 + 3 + 11  # after: mov si; mov dx; the loop and the halt
    code = head + bytes([0xBE, text_at & 0xFF, text_at >> 8])  # mov si, text
    code += bytes([0xBA, 0xF8, 0x03])  # mov dx, 0x3f8
    code += bytes([0xAC, 0x84, 0xC0, 0x74, 0x03, 0xEE, 0xEB, 0xF8])  # lodsb; test; jz halt; out; jmp back
    code += bytes([0xF4, 0xEB, 0xFD])  # halt: hlt; jmp halt
    return (code + message + b"\r\n\0").ljust(2048, b"\0")


def make_bootable_iso(path: Path) -> None:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=1)
    boot = boot_sector(MESSAGE)
    iso.add_fp(io.BytesIO(boot), len(boot), "/BOOT.;1")
    iso.add_eltorito("/BOOT.;1", bootcatfile="/BOOT.CAT;1", media_name="noemul", boot_load_size=4)
    iso.write(str(path))
    iso.close()


@pytest.fixture
def installer(tmp_path, settings, libvirtd):
    """The ISO, registered from the test's image directory; its copy on the host is removed afterwards."""
    settings.IMAGE_DIR = tmp_path / "images"
    settings.IMAGE_DIR.mkdir()
    make_bootable_iso(settings.IMAGE_DIR / "installer.iso")
    iso = images.register_image(
        "test-installer", "installer.iso", name="Test installer", os_family="other", purpose=Image.Purpose.ISO
    )
    yield iso
    pool = find_pool(libvirtd)
    for volume in BaseVolume.objects.filter(image=iso):
        try:
            pool.storageVolLookupByName(volume.volume_name).delete(0)
        except libvirt.libvirtError:
            pass


def console_log(server) -> bytes:
    path = Path(f"/var/log/libvirt/qemu/{server.domain_name}-console.log")
    return path.read_bytes() if path.exists() else b""


def test_a_running_server_boots_the_attached_iso_then_its_disk_again(
    libvirtd, kvm_host, workers, customer, installer, settings
):
    started = time.monotonic()
    worker = workers.start(env={"IMAGE_DIR": str(settings.IMAGE_DIR)})
    plan = factories.make_plan(slug="iso-tiny", vcpus=1, memory_mib=128, disk_gib=1)
    server = actions.order_server(
        customer, name="iso.example.com", plan=plan, image=factories.make_image(), region=kvm_host.region
    )
    workers.wait_ready(worker)

    def finished(operation: Operation) -> Operation:
        def check():
            operation.refresh_from_db()
            return operation.is_finished

        workers.wait(check, 60, f"the worker finishing {operation.type}")
        assert operation.status == "succeeded", operation.detail
        server.refresh_from_db()
        return operation

    finished(Operation.objects.get(server=server, type="create"))
    domain = libvirtd.lookupByUUIDString(str(server.id))
    assert domain.isActive()
    assert MESSAGE not in console_log(server)

    finished(actions.attach_iso(server, installer.slug, customer))

    assert (server.iso, server.status, server.power_state) == (installer, "running", "running")
    volume = BaseVolume.objects.get(host=kvm_host, image=installer, kind="iso", state="ready")
    assert volume.path == find_pool(libvirtd).storageVolLookupByName(volume.volume_name).path()
    live = parse(domain.XMLDesc(0))
    assert live.iso_path == volume.path
    assert live.boot_devices == ("cdrom", "hd")
    cdrom = next(disk for disk in live.disks if disk.device == "cdrom")
    # Read-only: libvirt leaves such a disk out of snapshots (and no longer writes snapshot="no" for it).
    assert cdrom.read_only
    assert cdrom.bus == ("sata" if "q35" in live.machine else "ide")
    assert parse(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).iso_path == volume.path
    # It boots from the ISO first: the ISO's boot code writes to the serial console.
    workers.wait(lambda: MESSAGE in console_log(server), 30, "the guest running the ISO's boot code")
    # An internal snapshot (disk and memory) is taken with the drive in: the ISO is not part of it.
    finished(actions.snapshot_server(server, "with the iso", customer))

    finished(actions.detach_iso(server, customer))

    assert (server.iso, server.status, server.power_state) == (None, "running", "running")
    for flags in (0, libvirt.VIR_DOMAIN_XML_INACTIVE):
        parsed = parse(domain.XMLDesc(flags))
        assert parsed.iso_path == "" and parsed.boot_devices == ("hd",)
        assert not [disk for disk in parsed.disks if disk.device == "cdrom"]
    assert domain.isActive()
    assert MESSAGE not in console_log(server)  # the log starts afresh with each start
    assert find_pool(libvirtd).storageVolLookupByName(volume.volume_name)  # left for other servers
    assert time.monotonic() - started < 90
