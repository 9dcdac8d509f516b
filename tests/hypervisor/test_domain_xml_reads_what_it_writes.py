"""The domain XML object model reads back what it writes: parsing a domain's XML gives the same domain,
which writes the same XML again (and that XML is valid for libvirt)."""

from __future__ import annotations

import dataclasses
import subprocess
import uuid
from pathlib import Path

import pytest
from lxml import etree

from hypervisor.xml.domain import (
    Bandwidth,
    Console,
    Disk,
    Domain,
    Graphics,
    KernelBoot,
    NetworkInterface,
    Rate,
    Serial,
    clean_traffic,
    parse,
    server_id_from_xml,
)

VIRT_XML_VALIDATE = "/usr/bin/virt-xml-validate"
UUID = uuid.UUID("0b6a7c1e-6f3c-4d2a-9a57-2c1f0e4d5b6a")


def domain(**overrides) -> Domain:
    values = dict(name="vps-web1", uuid=UUID, domain_type="kvm", vcpus=2, memory_mib=1024)
    values.update(overrides)
    return Domain(**values)


SYSTEM_DISK = Disk(source_file="/var/lib/libvirt/images/web1.qcow2")
SEED_DISK = Disk(
    source_file="/var/lib/libvirt/images/web1-seed.iso",
    target_dev="vdb",
    driver_type="raw",
    read_only=True,
    in_snapshots=False,
)
SEED_CDROM = Disk(
    source_file="/var/lib/libvirt/images/web1-seed.iso",
    target_dev="sda",
    bus="sata",
    device="cdrom",
    driver_type="raw",
    read_only=True,
)

DOMAINS = {
    "what the driver defines": domain(
        disks=[SYSTEM_DISK, SEED_DISK],
        interfaces=[NetworkInterface(mac="52:54:00:12:34:56", filterref=clean_traffic(["192.0.2.10"]))],
        serial=Serial(log_file="/var/log/libvirt/qemu/vps-web1-console.log"),
    ),
    "a cloud-init seed on a CD-ROM and two addresses": domain(
        disks=[SYSTEM_DISK, SEED_CDROM],
        interfaces=[
            NetworkInterface(mac="52:54:00:12:34:57", filterref=clean_traffic(["192.0.2.10", "192.0.2.11"]))
        ],
    ),
    "an address learnt from DHCP": domain(interfaces=[NetworkInterface(filterref=clean_traffic())]),
    "a bridged, shaped interface": domain(
        interfaces=[
            NetworkInterface(
                bridge="br0",
                mac="52:54:00:12:34:58",
                target_dev="vnet3",
                filterref=clean_traffic(["192.0.2.12"]),
                bandwidth=Bandwidth(
                    inbound=Rate(6104, burst=6104), outbound=Rate(6104, peak=12208, burst=6104)
                ),
            )
        ],
    ),
    "direct kernel boot": domain(
        kernel_boot=KernelBoot("/boot/vmlinuz", "/boot/initrd.img", "root=/dev/vda1 console=ttyS0")
    ),
    "direct kernel boot without a command line": domain(
        kernel_boot=KernelBoot("/boot/vmlinuz", "/boot/initrd")
    ),
    "its own server id in the metadata": domain(server_id="srv-42", domain_type="qemu", arch="aarch64"),
    "no graphics": domain(graphics=False),
    "no devices at all": domain(graphics=None, serial=None, console=None),
    "other consoles": domain(
        graphics=Graphics(type="spice", listen="", port=5901, autoport=False),
        serial=Serial(port=1),
        console=Console(port=1),
    ),
}


@pytest.mark.parametrize("written", DOMAINS.values(), ids=DOMAINS.keys())
def test_parsing_what_a_domain_writes_gives_the_same_xml(written):
    xml = written.to_xml()
    assert parse(xml).to_xml() == xml


@pytest.mark.parametrize("written", DOMAINS.values(), ids=DOMAINS.keys())
def test_parsing_what_a_domain_writes_gives_the_same_domain(written):
    # An empty server id is written as the domain's UUID, and read back so.
    assert parse(written.to_xml()) == dataclasses.replace(
        written, server_id=written.server_id or str(written.uuid)
    )


def test_graphics_true_and_false_stand_for_the_default_console_and_none():
    assert domain(graphics=True).graphics == Graphics()
    assert domain(graphics=False).graphics is None
    assert domain(graphics=False).to_xml() == domain(graphics=None).to_xml()
    root = etree.fromstring(domain().to_xml().encode())
    assert root.find("devices/graphics").get("listen") == "127.0.0.1"
    assert root.find("devices/video/model").get("type") == "vga"


def test_the_model_reads_device_names_and_the_panels_server_id():
    parsed = parse(DOMAINS["a bridged, shaped interface"].to_xml())
    assert parsed.interface_devices == ["vnet3"]
    assert parsed.interfaces[0].bandwidth.outbound == Rate(6104, peak=12208, burst=6104)
    parsed = parse(DOMAINS["a cloud-init seed on a CD-ROM and two addresses"].to_xml())
    assert parsed.disk_devices == ["vda"]  # the CD-ROM has no block counters worth reading
    assert parsed.interfaces[0].filterref.parameters == [("IP", "192.0.2.10"), ("IP", "192.0.2.11")]
    assert parsed.server_id == str(UUID)
    assert server_id_from_xml(DOMAINS["its own server id in the metadata"].to_xml()) == "srv-42"


def test_memory_in_other_units_is_read_in_mib():
    root = domain().to_element()
    memory = root.find("memory")
    memory.set("unit", "KiB")
    memory.text = str(2 * 1024 * 1024)
    assert parse(etree.tostring(root, encoding="unicode")).memory_mib == 2048
    memory.set("unit", "G")
    memory.text = "3"
    assert parse(etree.tostring(root, encoding="unicode")).memory_mib == 3072
    del memory.attrib["unit"]  # libvirt's default unit: KiB
    memory.text = "524288"
    assert parse(etree.tostring(root, encoding="unicode")).memory_mib == 512


@pytest.mark.parametrize(
    "name", ["what the driver defines", "a bridged, shaped interface", "direct kernel boot"]
)
def test_what_is_read_back_and_written_again_is_valid_for_libvirt(tmp_path: Path, name):
    path = tmp_path / "domain.xml"
    path.write_text(parse(DOMAINS[name].to_xml()).to_xml())
    result = subprocess.run(
        [VIRT_XML_VALIDATE, str(path), "domain"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{path.read_text()}"
