"""The domain XML model reads the XML libvirt itself writes (libvirt's simulated host, test:///default):
its units, the device names it fills in, and the elements the panel never writes. Changing the sizes of
libvirt's definition keeps every one of those elements."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import libvirt
import pytest
from lxml import etree

from hypervisor.xml.domain import (
    Bandwidth,
    Disk,
    Domain,
    NetworkInterface,
    Rate,
    Serial,
    clean_traffic,
    parse,
    server_id_from_xml,
    with_resources,
)

URI = "test:///default"
# The domain every test:///default connection starts with.
BUILT_IN_UUID = uuid.UUID("6695eb01-f6a4-8304-79aa-97f2502e193f")
INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE


@pytest.fixture
def conn() -> Iterator[libvirt.virConnect]:
    conn = libvirt.open(URI)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def panel_domain(conn) -> Iterator[tuple[Domain, libvirt.virDomain]]:
    """A domain the panel's model wrote, defined and running on the simulated host."""
    model = Domain(
        name=f"model-{uuid.uuid4().hex[:8]}",
        uuid=uuid.uuid4(),
        domain_type="test",
        arch="i686",
        vcpus=1,
        memory_mib=64,
        server_id="srv-7",
        disks=[
            Disk(source_file="/guest/model.qcow2"),
            Disk(source_file="/guest/model-seed.iso", target_dev="vdb", driver_type="raw", read_only=True),
        ],
        interfaces=[NetworkInterface(mac="52:54:00:00:00:07", filterref=clean_traffic(["192.0.2.7"]))],
        serial=Serial(log_file="/var/log/model-console.log"),
    )
    domain = conn.defineXML(model.to_xml())
    domain.create()
    try:
        yield model, domain
    finally:
        if domain.isActive():
            domain.destroy()
        domain.undefine()


def test_the_simulated_hosts_own_domain_reads_into_the_model(conn):
    built_in = conn.lookupByUUID(BUILT_IN_UUID.bytes)
    if not built_in.isActive():  # as the simulated host starts it (another test may have stopped it)
        built_in.create()
    xml = built_in.XMLDesc(0)
    parsed = parse(xml)
    assert (parsed.name, parsed.uuid, parsed.domain_type, parsed.arch) == (
        "test",
        BUILT_IN_UUID,
        "test",
        "i686",
    )
    assert parsed.vcpus == 2
    assert parsed.memory_mib == 8192  # <memory unit='KiB'>8388608</memory>
    assert parsed.kernel_boot is None
    assert parsed.disks == [
        Disk(source_file="/guest/diskimage1", target_dev="vda", bus="virtio", driver_type="")
    ]
    assert parsed.interfaces == [
        NetworkInterface(network="default", model="", mac="aa:bb:cc:dd:ee:ff", target_dev="testnet0")
    ]
    assert parsed.interface_devices == ["testnet0"]
    assert parsed.disk_devices == ["vda"]
    assert (parsed.serial, parsed.console, parsed.graphics) == (None, None, None)
    # Not a domain the panel made: no server id, however it is asked.
    assert parsed.server_id == ""
    assert server_id_from_xml(xml) is None


def test_a_running_panel_domain_reads_back_as_written_plus_what_libvirt_filled_in(panel_domain):
    model, domain = panel_domain
    parsed = parse(domain.XMLDesc(0))
    assert (parsed.name, parsed.uuid, parsed.vcpus, parsed.memory_mib) == (model.name, model.uuid, 1, 64)
    assert parsed.server_id == "srv-7" == server_id_from_xml(domain.XMLDesc(0))
    assert [
        (disk.source_file, disk.target_dev, disk.driver_type, disk.read_only) for disk in parsed.disks
    ] == [
        ("/guest/model.qcow2", "vda", "qcow2", False),
        ("/guest/model-seed.iso", "vdb", "raw", True),
    ]
    (interface,) = parsed.interfaces
    assert interface.mac == "52:54:00:00:00:07"
    assert interface.filterref == clean_traffic(["192.0.2.7"])
    assert interface.target_dev  # libvirt names the host's side of a running domain's interface
    assert parsed.interface_devices == [interface.target_dev]
    stats = domain.interfaceStats(interface.target_dev)  # a name libvirt answers to
    assert len(stats) == 8
    assert parsed.serial == model.serial
    assert parsed.console == model.console
    assert parsed.graphics == model.graphics


def test_changing_the_sizes_keeps_every_element_libvirt_wrote(conn, panel_domain):
    _model, domain = panel_domain
    before = etree.fromstring(domain.XMLDesc(INACTIVE).encode())
    changed = etree.fromstring(with_resources(domain.XMLDesc(INACTIVE), 2, 128).encode())

    assert changed.find("memory").get("unit") == "MiB" and changed.findtext("memory") == "128"
    assert changed.findtext("currentMemory") == "128"
    assert changed.findtext("vcpu") == "2"
    sized = {"memory", "currentMemory", "vcpu"}
    assert [child.tag for child in changed] == [child.tag for child in before]
    for old, new in zip(before, changed, strict=True):
        if old.tag not in sized:
            assert etree.tostring(new) == etree.tostring(old)
    # libvirt's own additions (e.g. the video model's vram) are still there once defined again.
    video_model = etree.tostring(before.find("devices/video/model"))
    assert b"vram" in video_model
    defined = conn.defineXML(etree.tostring(changed, encoding="unicode"))
    after = etree.fromstring(defined.XMLDesc(INACTIVE).encode())
    assert etree.tostring(after.find("devices/video/model")) == video_model
    parsed = parse(defined.XMLDesc(INACTIVE))
    assert (parsed.vcpus, parsed.memory_mib) == (2, 128)


def test_changing_the_sizes_drops_a_maximum_and_a_current_vcpu_count():
    xml = """<domain type="kvm"><name>sized</name><uuid>0b6a7c1e-6f3c-4d2a-9a57-2c1f0e4d5b6a</uuid>
      <maxMemory slots="16" unit="KiB">16777216</maxMemory><memory unit="KiB">1048576</memory>
      <vcpu placement="static" current="1">4</vcpu><cpu mode="host-passthrough"/></domain>"""
    root = etree.fromstring(with_resources(xml, 2, 2048).encode())
    assert root.find("maxMemory") is None
    assert root.find("vcpu").attrib == {"placement": "static"} and root.findtext("vcpu") == "2"
    assert root.find("currentMemory").get("unit") == "MiB" and root.findtext("currentMemory") == "2048"
    assert root.find("cpu").get("mode") == "host-passthrough"
    parsed = parse(etree.tostring(root, encoding="unicode"))
    assert (parsed.vcpus, parsed.memory_mib) == (2, 2048)


def test_a_speed_libvirt_applies_reads_back_as_the_interfaces_bandwidth(panel_domain):
    _model, domain = panel_domain
    (device,) = parse(domain.XMLDesc(0)).interface_devices
    params = {
        "inbound.average": 6104,
        "inbound.burst": 6104,
        "outbound.average": 6104,
        "outbound.burst": 6104,
    }
    domain.setInterfaceParameters(device, params, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    (interface,) = parse(domain.XMLDesc(0)).interfaces
    assert interface.bandwidth == Bandwidth(inbound=Rate(6104, burst=6104), outbound=Rate(6104, burst=6104))
