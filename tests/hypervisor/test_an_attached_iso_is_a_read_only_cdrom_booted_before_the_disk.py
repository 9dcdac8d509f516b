"""An installer ISO goes into a read-only CD-ROM drive on a bus the machine type has, booted before the
disk: written by the model (what a definition from scratch holds) and edited into libvirt's own XML (what an
attach or a detach does), valid for libvirt's schema, read back into the model, and gone again after a
detach. A domain that boots a kernel directly keeps doing so."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import libvirt
import pytest
from lxml import etree

from hypervisor import driver
from hypervisor.models import Host
from hypervisor.xml.domain import (
    Disk,
    Domain,
    KernelBoot,
    NetworkInterface,
    cdrom_bus,
    clean_traffic,
    has_iso,
    iso_drive,
    parse,
    with_iso,
)

VIRT_XML_VALIDATE = "/usr/bin/virt-xml-validate"
ISO = "/var/lib/libvirt/images/base-debian-installer-0123456789ab.iso"
OTHER_ISO = "/var/lib/libvirt/images/base-alpine-0123456789ab.iso"


def assert_valid(tmp_path: Path, xml: str) -> None:
    path = tmp_path / f"domain-{uuid.uuid4().hex}.xml"
    path.write_text(xml)
    result = subprocess.run(
        [VIRT_XML_VALIDATE, str(path), "domain"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{xml}"


def panel_domain(**overrides) -> Domain:
    values = dict(
        name="vps-iso",
        uuid=uuid.UUID("3f0e2a7c-0c4b-4d7e-9f1a-5b6c7d8e9f00"),
        server_id="3f0e2a7c-0c4b-4d7e-9f1a-5b6c7d8e9f00",
        domain_type="kvm",
        vcpus=1,
        memory_mib=512,
        disks=[
            Disk(source_file="/var/lib/libvirt/images/iso.qcow2"),
            Disk(
                source_file="/var/lib/libvirt/images/iso-seed.iso",
                target_dev="vdb",
                driver_type="raw",
                read_only=True,
                in_snapshots=False,
            ),
        ],
        interfaces=[NetworkInterface(mac="52:54:00:00:00:42", filterref=clean_traffic(["192.0.2.42"]))],
    )
    values.update(overrides)
    return Domain(**values)


@pytest.mark.parametrize(
    ("machine", "bus", "target"),
    [
        ("pc-q35-7.2", "sata", "sda"),
        ("q35", "sata", "sda"),
        ("pc-i440fx-7.2", "ide", "hdc"),
        ("pc", "ide", "hdc"),
        ("", "ide", "hdc"),
        ("virt", "scsi", "sda"),
    ],
)
def test_the_drive_is_on_a_bus_the_machine_type_has(machine, bus, target):
    assert cdrom_bus(machine) == bus
    drive = iso_drive(ISO, machine)
    assert (drive.device, drive.bus, drive.target_dev, drive.driver_type) == ("cdrom", bus, target, "raw")
    assert drive.read_only and not drive.in_snapshots


@pytest.mark.parametrize("machine", ["pc-q35-7.2", "pc-i440fx-7.2"])
def test_a_domain_with_the_iso_validates_and_reads_back(tmp_path, machine):
    domain = panel_domain(
        disks=[*panel_domain().disks, iso_drive(ISO, machine)], boot_devices=("cdrom", "hd"), machine=machine
    )
    xml = domain.to_xml()
    assert_valid(tmp_path, xml)
    root = etree.fromstring(xml.encode())
    assert [boot.get("dev") for boot in root.findall("os/boot")] == ["cdrom", "hd"]
    assert root.find("os/type").get("machine") == machine
    cdrom = root.find("devices/disk[@device='cdrom']")
    assert cdrom.find("readonly") is not None and cdrom.get("snapshot") == "no"
    again = parse(xml)
    assert again == domain
    assert again.iso_path == ISO
    assert again.disk_devices == ["vda", "vdb"]  # the CD-ROM has no block counters worth reading
    assert has_iso(xml, ISO) and not has_iso(xml, "") and not has_iso(xml, OTHER_ISO)


def test_the_driver_defines_a_server_with_its_iso_from_scratch(tmp_path):
    host = Host(name="h", uri="qemu:///system", domain_type="kvm", arch="x86_64")
    request = driver.DomainRequest(
        uuid=uuid.uuid4(), name="vps-x", vcpus=1, memory_mib=512, disk_gib=1, mac="52:54:00:00:00:43",
        ipv4=("192.0.2.43",), iso_path=ISO,
    )  # fmt: skip
    xml = driver.domain_xml(host, request, "/pool/x.qcow2", "/pool/x-seed.iso", machine="pc-q35-7.2")
    assert_valid(tmp_path, xml)
    parsed = parse(xml)
    assert (parsed.iso_path, parsed.boot_devices, parsed.machine) == (ISO, ("cdrom", "hd"), "pc-q35-7.2")
    assert [disk.bus for disk in parsed.disks] == ["virtio", "virtio", "sata"]
    # Without an ISO the definition is what it always was: the disk boots, libvirt picks the machine.
    plain = parse(driver.domain_xml(host, driver.DomainRequest(**{**request.__dict__, "iso_path": ""}), "/d"))
    assert (plain.iso_path, plain.boot_devices, plain.machine) == ("", ("hd",), "")


@pytest.fixture
def libvirt_xml():
    """A domain as libvirt's simulated host writes it back (its own elements, addresses, no machine type
    of the panel's)."""
    conn = libvirt.open("test:///default")
    domain = conn.defineXML(panel_domain(name=f"iso-{uuid.uuid4().hex[:8]}", uuid=uuid.uuid4(), server_id="",
                                         domain_type="test", arch="i686").to_xml())  # fmt: skip
    try:
        yield domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    finally:
        domain.undefine()
        conn.close()


def test_attaching_replacing_and_detaching_edit_libvirts_definition_in_place(libvirt_xml):
    before = parse(libvirt_xml)
    assert before.iso_path == "" and has_iso(libvirt_xml, "")

    attached = with_iso(libvirt_xml, ISO)
    parsed = parse(attached)
    assert parsed.iso_path == ISO and parsed.boot_devices == ("cdrom", "hd")
    assert has_iso(attached, ISO)
    # Everything else libvirt wrote is kept.
    assert parsed.disks[:2] == before.disks and parsed.interfaces == before.interfaces
    devices = etree.fromstring(attached.encode()).find("devices")
    assert devices.findall("disk")[-1].get("device") == "cdrom"  # listed with the other disks
    assert devices.index(devices.findall("disk")[-1]) == len(devices.findall("disk")) - 1

    replaced = parse(with_iso(attached, OTHER_ISO))
    assert replaced.iso_path == OTHER_ISO
    assert len([disk for disk in replaced.disks if disk.device == "cdrom"]) == 1

    detached = with_iso(attached, "")
    assert parse(detached).iso_path == "" and parse(detached).boot_devices == ("hd",)
    assert parse(detached).disks == before.disks
    assert has_iso(detached, "") and not has_iso(detached, ISO)


def test_a_domain_booting_a_kernel_directly_keeps_its_kernel_with_an_iso(tmp_path):
    kernel = KernelBoot("/pool/vmlinuz", "/pool/initrd", "root=/dev/vda1 console=ttyS0")
    xml = panel_domain(kernel_boot=kernel).to_xml()
    attached = with_iso(xml, ISO)
    assert_valid(tmp_path, attached)
    root = etree.fromstring(attached.encode())
    assert root.findall("os/boot") == []  # firmware boot devices do not apply to a kernel boot
    assert parse(attached).kernel_boot == kernel
    assert parse(attached).iso_path == ISO
    assert has_iso(attached, ISO)
    detached = with_iso(attached, "")
    assert parse(detached).kernel_boot == kernel and parse(detached).iso_path == ""
    assert_valid(tmp_path, detached)


def test_what_an_attach_writes_into_a_definition_validates(tmp_path):
    """libvirt's XML of a domain of the panel, as a real host gives it back (with a machine type)."""
    domain = panel_domain(machine="pc-i440fx-7.2")
    attached = with_iso(domain.to_xml(), ISO)
    assert_valid(tmp_path, attached)
    cdrom = parse(attached).disks[-1]
    assert (cdrom.bus, cdrom.target_dev) == ("ide", "hdc")
    assert_valid(tmp_path, with_iso(attached, ""))
