"""The guest image the integration tests use boots for real: under QEMU emulation on the real libvirtd it
reaches the end of cloud-init with the hostname from a NoCloud seed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import libvirt
import pytest
from lxml import etree

from tests.guest_image import GuestImage

URI = "qemu:///system"
NETWORK = "default"
IMAGES_DIR = Path("/var/lib/libvirt/images")
BOOT_TIMEOUT = 180
HOSTNAME = "imagetest"
FINISHED = re.compile(r"Cloud-init v\. \S+ finished at .*Datasource DataSourceNoCloud")


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    element = etree.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def domain_xml(name: str, image: GuestImage, disk: Path, seed: Path, console_log: Path) -> str:
    """An emulated ('qemu', not 'kvm') guest booted from the image's kernel and initrd directly."""
    root = etree.Element("domain", type="qemu")
    _sub(root, "name", name)
    _sub(root, "uuid", str(uuid.uuid4()))
    _sub(root, "memory", "512", unit="MiB")
    _sub(root, "vcpu", "1")
    os_element = _sub(root, "os")
    _sub(os_element, "type", "hvm", arch="x86_64")
    _sub(os_element, "kernel", str(image.kernel))
    _sub(os_element, "initrd", str(image.initrd))
    _sub(os_element, "cmdline", image.cmdline)
    features = _sub(root, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    _sub(root, "clock", offset="utc")
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "restart")
    _sub(root, "on_crash", "destroy")
    devices = _sub(root, "devices")
    for path, driver_type, target in ((disk, "qcow2", "vda"), (seed, "raw", "vdb")):
        # virtio for the seed too: the Debian cloud kernel has no AHCI driver to see a SATA CD-ROM.
        element = _sub(devices, "disk", type="file", device="disk")
        _sub(element, "driver", name="qemu", type=driver_type)
        _sub(element, "source", file=str(path))
        _sub(element, "target", dev=target, bus="virtio")
    interface = _sub(devices, "interface", type="network")
    _sub(interface, "source", network=NETWORK)
    _sub(interface, "model", type="virtio")
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "log", file=str(console_log), append="off")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")
    return etree.tostring(root, pretty_print=True, encoding="unicode")


def make_seed(directory: Path) -> Path:
    """A NoCloud seed: a FAT image labelled cidata holding user-data and meta-data."""
    (directory / "user-data").write_text(f"#cloud-config\nhostname: {HOSTNAME}\n")
    (directory / "meta-data").write_text(f"instance-id: {HOSTNAME}\nlocal-hostname: {HOSTNAME}\n")
    seed = directory / "seed.img"
    subprocess.run(["mkfs.vfat", "-n", "cidata", "-C", str(seed), "1024"], check=True, capture_output=True)
    subprocess.run(
        ["mcopy", "-i", str(seed), str(directory / "user-data"), str(directory / "meta-data"), "::/"],
        check=True,
        capture_output=True,
    )
    return seed


@pytest.fixture
def libvirtd() -> libvirt.virConnect:
    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError as exc:
        pytest.fail(f"no libvirtd answers at {URI} (start it with `virtlogd -d; libvirtd -d`): {exc}")
    yield conn
    conn.close()


@pytest.fixture
def work_dir() -> Path:
    """A directory the QEMU process (user libvirt-qemu) can reach; virtlogd (root) writes the console log."""
    IMAGES_DIR.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="vpspanel-test-", dir=IMAGES_DIR))
    os.chmod(directory, 0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


@pytest.mark.kvm
def test_the_test_image_boots_with_its_cloud_init_hostname(guest_image, libvirtd, work_dir):
    network = libvirtd.networkLookupByName(NETWORK)
    if not network.isActive():
        network.create()
    disk = work_dir / "disk.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(guest_image.disk), str(disk)],
        check=True,
    )
    seed = make_seed(work_dir)
    console_log = work_dir / "console.log"
    name = f"vpspanel-imagetest-{uuid.uuid4().hex[:8]}"
    domain = None
    try:
        domain = libvirtd.defineXML(domain_xml(name, guest_image, disk, seed, console_log))
        started = time.monotonic()
        domain.create()
        deadline = started + BOOT_TIMEOUT
        console = ""
        while time.monotonic() < deadline:
            console = read(console_log)
            if FINISHED.search(console) and f"{HOSTNAME} login:" in console:
                break
            if not domain.isActive():
                break
            time.sleep(2)
        elapsed = time.monotonic() - started
        tail = "\n".join(console.splitlines()[-40:])
        assert FINISHED.search(console), f"cloud-init did not finish within {elapsed:.0f} s; console:\n{tail}"
        assert f"{HOSTNAME} login:" in console, f"no login prompt for {HOSTNAME}; console:\n{tail}"
        print(f"\nguest booted to cloud-init finished and a login prompt in {elapsed:.1f} s")
        print("\n".join(line for line in console.splitlines() if FINISHED.search(line) or "login:" in line))
    finally:
        if domain is not None:
            if domain.isActive():
                domain.destroy()
            domain.undefine()
