"""The XML the panel writes is valid for libvirt: checked with libvirt's own schemas (virt-xml-validate)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from lxml import etree

from hypervisor.xml.domain import (
    METADATA_NS,
    Disk,
    Domain,
    Graphics,
    NetworkInterface,
    clean_traffic,
    parse,
    server_id_from_xml,
)
from hypervisor.xml.storage import GIB, DirPool, Volume, pool_target_path

VIRT_XML_VALIDATE = "/usr/bin/virt-xml-validate"


def validate(tmp_path: Path, xml: str, schema: str) -> subprocess.CompletedProcess:
    path = tmp_path / f"{schema}-{uuid.uuid4().hex}.xml"
    path.write_text(xml)
    return subprocess.run(
        [VIRT_XML_VALIDATE, str(path), schema], capture_output=True, text=True, timeout=30, check=False
    )


def assert_valid(tmp_path: Path, xml: str, schema: str) -> None:
    result = validate(tmp_path, xml, schema)
    assert result.returncode == 0, f"{schema} XML rejected:\n{result.stdout}{result.stderr}\n{xml}"


def full_domain(domain_type: str, **overrides) -> Domain:
    values = dict(
        name="vps-web1",
        uuid=uuid.uuid4(),
        domain_type=domain_type,
        vcpus=2,
        memory_mib=1024,
        disks=[
            Disk(source_file="/var/lib/libvirt/images/web1.qcow2"),
            Disk(
                source_file="/var/lib/libvirt/images/web1-seed.iso",
                target_dev="sda",
                bus="sata",
                device="cdrom",
                driver_type="raw",
                read_only=True,
            ),
        ],
        interfaces=[
            NetworkInterface(
                network="default",
                mac="52:54:00:12:34:56",
                filterref=clean_traffic(["192.0.2.10", "192.0.2.11"]),
            )
        ],
    )
    values.update(overrides)
    return Domain(**values)


@pytest.mark.parametrize("domain_type", ["kvm", "qemu"])
def test_a_full_domain_validates(tmp_path, domain_type):
    xml = full_domain(domain_type).to_xml()
    assert etree.fromstring(xml.encode()).get("type") == domain_type
    assert_valid(tmp_path, xml, "domain")


def test_a_bridged_interface_with_the_anti_spoofing_filter_validates(tmp_path):
    interface = NetworkInterface(
        bridge="br0", mac="52:54:00:12:34:57", filterref=clean_traffic(["192.0.2.12"])
    )
    xml = full_domain("kvm", interfaces=[interface]).to_xml()
    filterref = etree.fromstring(xml.encode()).find("devices/interface/filterref")
    assert filterref.get("filter") == "clean-traffic"
    assert [(p.get("name"), p.get("value")) for p in filterref] == [("IP", "192.0.2.12")]
    assert_valid(tmp_path, xml, "domain")


@pytest.mark.parametrize("domain_type", ["kvm", "qemu"])
def test_a_minimal_domain_without_devices_or_graphics_validates(tmp_path, domain_type):
    domain = Domain(
        name="vps-bare", uuid=uuid.uuid4(), domain_type=domain_type, vcpus=1, memory_mib=128, graphics=False
    )
    assert_valid(tmp_path, domain.to_xml(), "domain")


def test_the_validator_does_reject_invalid_domain_xml(tmp_path):
    """Guards the tests above: a validator that accepted everything would prove nothing."""
    root = etree.fromstring(full_domain("kvm").to_xml().encode())
    root.find("vcpu").text = "two"
    result = validate(tmp_path, etree.tostring(root, encoding="unicode"), "domain")
    assert result.returncode != 0


def test_a_dir_pool_validates(tmp_path):
    xml = DirPool("default", "/var/lib/libvirt/images").to_xml()
    # libvirt's schema for pools is called `storagepool` (there is no `pool` schema).
    assert_valid(tmp_path, xml, "storagepool")
    assert pool_target_path(xml) == "/var/lib/libvirt/images"


def test_a_volume_validates(tmp_path):
    xml = Volume("0b6a7c1e.qcow2", 25 * GIB).to_xml()
    assert_valid(tmp_path, xml, "storagevol")
    root = etree.fromstring(xml.encode())
    assert root.findtext("capacity") == str(25 * GIB)
    assert root.find("capacity").get("unit") == "bytes"
    assert root.find("target/format").get("type") == "qcow2"


def test_the_metadata_element_carries_the_server_id():
    domain_uuid = uuid.uuid4()
    xml = full_domain("kvm", uuid=domain_uuid, server_id="srv-42").to_xml()
    element = etree.fromstring(xml.encode()).find(f"metadata/{{{METADATA_NS}}}server")
    assert element is not None
    assert element.get("id") == "srv-42"
    assert server_id_from_xml(xml) == "srv-42"


def test_the_server_id_defaults_to_the_domain_uuid():
    domain_uuid = uuid.uuid4()
    xml = full_domain("qemu", uuid=domain_uuid).to_xml()
    assert server_id_from_xml(xml) == str(domain_uuid)


def test_a_domain_without_panel_metadata_has_no_server_id():
    root = etree.fromstring(full_domain("kvm").to_xml().encode())
    root.remove(root.find("metadata"))
    assert server_id_from_xml(etree.tostring(root, encoding="unicode")) is None


def test_metadata_of_another_application_is_not_mistaken_for_the_panels():
    xml = """<domain type="kvm"><name>foreign</name><metadata>
      <other:server xmlns:other="urn:someone-else" id="not-ours"/></metadata></domain>"""
    assert server_id_from_xml(xml) is None


def test_the_guest_agent_channel_and_a_vnc_password_validate_and_read_back(tmp_path):
    domain = full_domain("kvm", graphics=Graphics(password="s3cr3t99"))
    xml = domain.to_xml()
    assert_valid(tmp_path, xml, "domain")
    root = etree.fromstring(xml.encode())
    channel = root.find("devices/channel")
    assert channel.get("type") == "unix"
    assert (channel.find("target").get("type"), channel.find("target").get("name")) == (
        "virtio",
        "org.qemu.guest_agent.0",
    )
    assert root.find("devices/graphics").get("passwd") == "s3cr3t99"
    again = parse(xml)
    assert again.guest_agent is not None and again.graphics.password == "s3cr3t99"
    assert parse(full_domain("kvm", guest_agent=None).to_xml()).guest_agent is None


def test_a_domain_booting_its_first_disk_only_validates_and_reads_back(tmp_path):
    """Rescue mode's domain: the rescue system's disk is the one boot device (the firmware boots nothing
    else), so the domain has a per-device boot order and no `<os><boot dev=...>`."""
    rescue, own = Disk(source_file="/pool/rescue.qcow2", boot_order=1), Disk(source_file="/pool/own.qcow2")
    own.target_dev = "vdb"
    domain = full_domain("kvm", disks=[rescue, own])
    xml = domain.to_xml()
    assert_valid(tmp_path, xml, "domain")
    root = etree.fromstring(xml.encode())
    assert root.find("os/boot") is None
    assert [disk.get("order") for disk in root.findall("devices/disk/boot")] == ["1"]
    assert [disk.boot_order for disk in parse(xml).disks] == [1, None]
    assert parse(xml).to_xml() == xml
