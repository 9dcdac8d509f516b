"""Domain XML: dataclasses that serialise themselves with lxml."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from lxml import etree

METADATA_NS = "urn:vpspanel:server:1"
METADATA_PREFIX = "vpspanel"


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    element = etree.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        element.text = text
    return element


@dataclass
class Disk:
    """A file-backed disk (a volume of a `dir` pool)."""

    source_file: str
    target_dev: str = "vda"
    bus: str = "virtio"
    device: str = "disk"
    driver_type: str = "qcow2"
    read_only: bool = False
    in_snapshots: bool = True

    def to_element(self, parent: etree._Element) -> etree._Element:
        disk = _sub(
            parent, "disk", type="file", device=self.device, snapshot=None if self.in_snapshots else "no"
        )
        _sub(disk, "driver", name="qemu", type=self.driver_type)
        _sub(disk, "source", file=self.source_file)
        _sub(disk, "target", dev=self.target_dev, bus=self.bus)
        if self.read_only:
            _sub(disk, "readonly")
        return disk


@dataclass
class FilterRef:
    """A libvirt network filter (nwfilter) bound to an interface, with its parameters. A parameter name may
    repeat: libvirt takes each value (e.g. one `IP` per address the guest may use)."""

    filter: str
    parameters: list[tuple[str, str]] = field(default_factory=list)

    def to_element(self, parent: etree._Element) -> etree._Element:
        element = _sub(parent, "filterref", filter=self.filter)
        for name, value in self.parameters:
            _sub(element, "parameter", name=name, value=value)
        return element


ANTI_SPOOFING_FILTER = "clean-traffic"


def clean_traffic(addresses: Iterable[str] = ()) -> FilterRef:
    """libvirt's `clean-traffic` filter bound to the guest's IPv4 addresses: the guest can send only from
    its own MAC and these addresses, and cannot answer ARP for others. Without addresses (a region with no
    IPv4 pool, where the host's network hands out addresses) libvirt learns the address from the DHCP
    server's answer only (`CTRL_IP_LEARNING=dhcp`), never from what the guest itself sends first, so a
    guest cannot claim the gateway's or a neighbour's address."""
    parameters = [("IP", str(ipaddress.IPv4Address(address))) for address in addresses]
    return FilterRef(ANTI_SPOOFING_FILTER, parameters or [("CTRL_IP_LEARNING", "dhcp")])


@dataclass
class NetworkInterface:
    """A NIC on a libvirt network, or on a host bridge when `bridge` is set."""

    network: str = "default"
    bridge: str = ""
    model: str = "virtio"
    mac: str | None = None
    filterref: FilterRef | None = None

    def to_element(self, parent: etree._Element) -> etree._Element:
        interface = _sub(parent, "interface", type="bridge" if self.bridge else "network")
        if self.mac:
            _sub(interface, "mac", address=self.mac)
        if self.bridge:
            _sub(interface, "source", bridge=self.bridge)
        else:
            _sub(interface, "source", network=self.network)
        _sub(interface, "model", type=self.model)
        if self.filterref is not None:
            self.filterref.to_element(interface)
        return interface


@dataclass
class KernelBoot:
    """Direct kernel boot: the host passes this kernel and initrd to the guest (no bootloader needed)."""

    kernel: str
    initrd: str
    cmdline: str = ""


@dataclass
class Domain:
    name: str
    uuid: uuid.UUID
    domain_type: str
    vcpus: int
    memory_mib: int
    arch: str = "x86_64"
    server_id: str = ""
    disks: list[Disk] = field(default_factory=list)
    interfaces: list[NetworkInterface] = field(default_factory=list)
    graphics: bool = True
    kernel_boot: KernelBoot | None = None
    console_log: str = ""

    def to_element(self) -> etree._Element:
        root = etree.Element("domain", type=self.domain_type)
        _sub(root, "name", self.name)
        _sub(root, "uuid", str(self.uuid))
        metadata = _sub(root, "metadata")
        etree.SubElement(
            metadata,
            f"{{{METADATA_NS}}}server",
            {"id": self.server_id or str(self.uuid)},
            nsmap={METADATA_PREFIX: METADATA_NS},
        )
        _sub(root, "memory", str(self.memory_mib), unit="MiB")
        _sub(root, "currentMemory", str(self.memory_mib), unit="MiB")
        _sub(root, "vcpu", str(self.vcpus), placement="static")
        os_element = _sub(root, "os")
        _sub(os_element, "type", "hvm", arch=self.arch)
        if self.kernel_boot:
            _sub(os_element, "kernel", self.kernel_boot.kernel)
            _sub(os_element, "initrd", self.kernel_boot.initrd)
            if self.kernel_boot.cmdline:
                _sub(os_element, "cmdline", self.kernel_boot.cmdline)
        else:
            _sub(os_element, "boot", dev="hd")
        features = _sub(root, "features")
        _sub(features, "acpi")
        _sub(features, "apic")
        _sub(root, "clock", offset="utc")
        _sub(root, "on_poweroff", "destroy")
        _sub(root, "on_reboot", "restart")
        _sub(root, "on_crash", "destroy")
        devices = _sub(root, "devices")
        for disk in self.disks:
            disk.to_element(devices)
        for interface in self.interfaces:
            interface.to_element(devices)
        serial = _sub(devices, "serial", type="pty")
        if self.console_log:
            _sub(serial, "log", file=self.console_log, append="off")
        _sub(serial, "target", port="0")
        console = _sub(devices, "console", type="pty")
        _sub(console, "target", type="serial", port="0")
        if self.graphics:
            graphics = _sub(devices, "graphics", type="vnc", port="-1", autoport="yes", listen="127.0.0.1")
            _sub(graphics, "listen", type="address", address="127.0.0.1")
            video = _sub(devices, "video")
            _sub(video, "model", type="vga")
        _sub(devices, "memballoon", model="virtio")
        return root

    def to_xml(self) -> str:
        return etree.tostring(self.to_element(), pretty_print=True, encoding="unicode")


def server_id_from_xml(xml: str) -> str | None:
    """The panel's server id from a domain's metadata, or None for a domain the panel did not create."""
    root = etree.fromstring(xml.encode())
    element = root.find(f"metadata/{{{METADATA_NS}}}server")
    return element.get("id") if element is not None else None
