"""A domain definition rewritten for a migration's destination (`relocated`) names the destination's files for
each disk, the destination's kernel and initrd, and its bridge or network; everything else libvirt wrote
(MAC, filter, PCI addresses, machine type, VNC password) is kept, a live domain's host-side interface name
and backing chain are left to the destination, and a file disk without a counterpart is refused. The result
still passes virt-xml-validate."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest
from lxml import etree

from hypervisor.xml.domain import Disk, Domain, FilterRef, KernelBoot, NetworkInterface, parse, relocated

SOURCE_POOL = "/var/lib/libvirt/images"
TARGET_POOL = "/srv/pool"


def live_xml() -> str:
    """A running domain's XML as libvirt gives it: addresses, a vnet device, a backing chain."""
    server = uuid.UUID("6f1c1a52-3e0b-4b57-9a52-0e6a3c3d9b11")
    domain = Domain(
        name=f"vps-{server}",
        uuid=server,
        domain_type="kvm",
        vcpus=1,
        memory_mib=512,
        machine="pc-i440fx-7.2",
        disks=[
            Disk(source_file=f"{SOURCE_POOL}/{server}.qcow2"),
            Disk(source_file=f"{SOURCE_POOL}/{server}-seed.iso", target_dev="vdb", driver_type="raw"),
        ],
        interfaces=[
            NetworkInterface(
                network="default",
                mac="52:54:00:12:34:56",
                filterref=FilterRef(f"vps-{server}"),
                target_dev="vnet7",
            )
        ],
        kernel_boot=KernelBoot(f"{SOURCE_POOL}/vmlinuz-a", f"{SOURCE_POOL}/initrd-a", "console=ttyS0"),
    )
    root = domain.to_element()
    disk = root.find("devices/disk")
    backing = etree.SubElement(disk, "backingStore", type="file")
    etree.SubElement(backing, "source", file=f"{SOURCE_POOL}/base.qcow2")
    interface = root.find("devices/interface")
    interface.find("source").set("bridge", "virbr0")  # libvirt names the network's bridge when it runs
    etree.SubElement(interface, "address", type="pci", domain="0x0000", bus="0x00", slot="0x03")
    root.find("devices/graphics").set("passwd", "secret12")
    etree.SubElement(root.find("os"), "bootmenu", enable="no")
    return etree.tostring(root, encoding="unicode")


def paths(xml: str) -> dict[str, str]:
    return {disk.source_file: disk.source_file.replace(SOURCE_POOL, TARGET_POOL) for disk in parse(xml).disks}


TARGET_KERNEL = KernelBoot(f"{TARGET_POOL}/vmlinuz-b", f"{TARGET_POOL}/initrd-b", "console=ttyS0")


def test_disks_kernel_and_bridge_are_the_destinations_and_the_rest_is_kept():
    xml = live_xml()
    moved = relocated(xml, paths(xml), network="default", bridge="br0", kernel_boot=TARGET_KERNEL)
    root = etree.fromstring(moved.encode())
    assert [source.get("file") for source in root.findall("devices/disk/source")] == [
        f"{TARGET_POOL}/6f1c1a52-3e0b-4b57-9a52-0e6a3c3d9b11.qcow2",
        f"{TARGET_POOL}/6f1c1a52-3e0b-4b57-9a52-0e6a3c3d9b11-seed.iso",
    ]
    assert root.findall("devices/disk/backingStore") == []
    assert [child.tag for child in root.find("os")] == ["type", "kernel", "initrd", "cmdline", "bootmenu"]
    assert parse(moved).kernel_boot == TARGET_KERNEL
    [interface] = root.findall("devices/interface")
    assert interface.get("type") == "bridge"
    assert [(element.tag, dict(element.attrib)) for element in interface.findall("source")] == [
        ("source", {"bridge": "br0"})
    ]
    assert interface.find("target") is None  # vnet7 is the source host's name
    assert interface.find("mac").get("address") == "52:54:00:12:34:56"
    assert interface.find("filterref").get("filter") == "vps-6f1c1a52-3e0b-4b57-9a52-0e6a3c3d9b11"
    assert interface.find("address").get("slot") == "0x03"
    assert root.find("devices/graphics").get("passwd") == "secret12"
    assert root.find("os/type").get("machine") == "pc-i440fx-7.2"
    assert root.get("type") == "kvm"

    # Onto a libvirt network of the destination, and another domain type (a cold move only).
    again = etree.fromstring(
        relocated(moved, paths(moved), network="vps", kernel_boot=TARGET_KERNEL, domain_type="qemu")
    )
    assert again.get("type") == "qemu"
    [interface] = again.findall("devices/interface")
    assert interface.get("type") == "network"
    assert dict(interface.find("source").attrib) == {"network": "vps"}

    if shutil.which("virt-xml-validate"):
        written = etree.tostring(again, encoding="unicode")
        result = subprocess.run(
            ["virt-xml-validate", "-", "domain"], input=written, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr + result.stdout


def test_a_file_without_a_counterpart_or_a_kernel_without_one_is_refused():
    xml = live_xml()
    known = paths(xml)
    known.pop(next(iter(known)))
    with pytest.raises(ValueError, match="no counterpart"):
        relocated(xml, known, network="default", kernel_boot=TARGET_KERNEL)
    with pytest.raises(ValueError, match="boots a kernel directly"):
        relocated(xml, paths(xml), network="default")
