"""Domain XML: dataclasses that write themselves with lxml (to_element) and read themselves back
(from_element), so that `parse(domain.to_xml()).to_xml() == domain.to_xml()`.

The model holds what the panel writes and reads. Parsing libvirt's own XML of a domain reads those parts
and leaves the rest (addresses, aliases, controllers...) out: to change a definition libvirt holds and
give it back, edit libvirt's tree in place (`with_resources`) rather than writing a parsed model.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from lxml import etree

METADATA_NS = "urn:vpspanel:server:1"
METADATA_PREFIX = "vpspanel"

# libvirt's memory units, in bytes (libvirt reads a number without a unit as KiB).
MEMORY_UNITS = {
    "b": 1,
    "bytes": 1,
    "kb": 1000,
    "k": 1024,
    "kib": 1024,
    "mb": 1000**2,
    "m": 1024**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "g": 1024**3,
    "gib": 1024**3,
    "tb": 1000**4,
    "t": 1024**4,
    "tib": 1024**4,
}


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str | None) -> etree._Element:
    element = etree.SubElement(
        parent, tag, {name: value for name, value in attrs.items() if value is not None}
    )
    if text is not None:
        element.text = text
    return element


def _attribute(element: etree._Element, path: str, name: str, default: str = "") -> str:
    """The attribute `name` of the child at `path`, or `default` when either is missing."""
    child = element.find(path)
    if child is None:
        return default
    return child.get(name, default)


def _integer(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _root(xml: str) -> etree._Element:
    return etree.fromstring(xml.encode())


def _memory_mib(element: etree._Element | None) -> int:
    """A libvirt memory size element (`<memory unit="KiB">2097152</memory>`) in MiB, rounded down."""
    if element is None:
        return 0
    unit = element.get("unit", "KiB")
    if unit.lower() not in MEMORY_UNITS:
        raise ValueError(f"unknown memory unit {unit!r}")
    return int((element.text or "0").strip()) * MEMORY_UNITS[unit.lower()] // 1024**2


def _set_memory_mib(element: etree._Element, mib: int) -> None:
    element.set("unit", "MiB")
    element.text = str(mib)


@dataclass
class Disk:
    """A file-backed disk (a volume of a `dir` pool); `device="cdrom"` makes it a CD-ROM (the cloud-init
    seed can be one). Read from libvirt's XML, a disk that is not a file has an empty `source_file`."""

    source_file: str
    target_dev: str = "vda"
    bus: str = "virtio"
    device: str = "disk"
    driver_type: str = "qcow2"
    read_only: bool = False
    in_snapshots: bool = True
    # The disk's place in a per-device boot order (`<boot order=.../>`): the firmware then boots the listed
    # devices only, in that order, and the domain has no `<os><boot dev=.../>`.
    boot_order: int | None = None

    def to_element(self, parent: etree._Element) -> etree._Element:
        disk = _sub(
            parent, "disk", type="file", device=self.device, snapshot=None if self.in_snapshots else "no"
        )
        if self.driver_type:
            _sub(disk, "driver", name="qemu", type=self.driver_type)
        _sub(disk, "source", file=self.source_file)
        _sub(disk, "target", dev=self.target_dev, bus=self.bus)
        if self.read_only:
            _sub(disk, "readonly")
        if self.boot_order is not None:
            _sub(disk, "boot", order=str(self.boot_order))
        return disk

    @classmethod
    def from_element(cls, element: etree._Element) -> Disk:
        return cls(
            source_file=_attribute(element, "source", "file"),
            target_dev=_attribute(element, "target", "dev"),
            bus=_attribute(element, "target", "bus"),
            device=element.get("device", "disk"),
            driver_type=_attribute(element, "driver", "type"),
            read_only=element.find("readonly") is not None,
            in_snapshots=element.get("snapshot") != "no",
            boot_order=_integer(_attribute(element, "boot", "order"), None),
        )


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

    @classmethod
    def from_element(cls, element: etree._Element) -> FilterRef:
        return cls(
            filter=element.get("filter", ""),
            parameters=[
                (parameter.get("name", ""), parameter.get("value", ""))
                for parameter in element.findall("parameter")
            ],
        )


# libvirt's stock anti-spoofing filter. Servers' interfaces reference a filter of their own
# (hypervisor.network_filter, `vps-<uuid>`, made of the same parts plus IPv6 and the firewall); domains
# defined before that reference this one until the panel binds them to their own.
ANTI_SPOOFING_FILTER = "clean-traffic"


def clean_traffic(addresses: Iterable[str] = ()) -> FilterRef:
    """libvirt's `clean-traffic` filter bound to the guest's IPv4 addresses: the guest can send only from
    its own MAC and these addresses, and cannot answer ARP for others. Without addresses (a region with no
    IPv4 pool, where the host's network hands out addresses) libvirt learns the address from the DHCP
    server's answer only (`CTRL_IP_LEARNING=dhcp`), never from what the guest itself sends first, so a
    guest cannot claim the gateway's or a neighbour's address."""
    parameters = [("IP", str(ipaddress.IPv4Address(address))) for address in addresses]
    return FilterRef(ANTI_SPOOFING_FILTER, parameters or [("CTRL_IP_LEARNING", "dhcp")])


def _same_filter(one: FilterRef, other: FilterRef) -> bool:
    return one.filter == other.filter and sorted(one.parameters) == sorted(other.parameters)


def refiltered_interfaces(xml: str, filterref: FilterRef) -> list[str]:
    """The domain's interfaces that are not bound to `filterref` (with its parameters), each written as
    libvirt's update of a device takes it: the interface element as libvirt wrote it in `xml` (the live or
    the persistent definition), with `filterref` in place of the filter it has."""
    changed = []
    for interface in _root(xml).findall("devices/interface"):
        current = interface.find("filterref")
        if current is not None and _same_filter(FilterRef.from_element(current), filterref):
            continue
        position = len(interface) if current is None else interface.index(current)
        if current is not None:
            interface.remove(current)
        element = filterref.to_element(interface)
        interface.remove(element)
        interface.insert(position, element)
        element.tail = current.tail if current is not None else None
        interface.tail = None
        changed.append(etree.tostring(interface, encoding="unicode"))
    return changed


@dataclass
class Rate:
    """One direction of an interface's traffic shaping, in libvirt's units: KiB/s for `average` and
    `peak`, KiB for `burst`."""

    average: int
    peak: int | None = None
    burst: int | None = None

    def to_element(self, parent: etree._Element, direction: str) -> etree._Element:
        return _sub(
            parent,
            direction,
            average=str(self.average),
            peak=None if self.peak is None else str(self.peak),
            burst=None if self.burst is None else str(self.burst),
        )

    @classmethod
    def from_element(cls, element: etree._Element) -> Rate:
        peak, burst = element.get("peak"), element.get("burst")
        return cls(
            average=_integer(element.get("average"), 0),
            peak=None if peak is None else _integer(peak, 0),
            burst=None if burst is None else _integer(burst, 0),
        )


@dataclass
class Bandwidth:
    """An interface's traffic shaping (`<bandwidth>`), each direction from the guest's side of the host:
    inbound is what the guest receives."""

    inbound: Rate | None = None
    outbound: Rate | None = None

    def to_element(self, parent: etree._Element) -> etree._Element:
        element = _sub(parent, "bandwidth")
        if self.inbound is not None:
            self.inbound.to_element(element, "inbound")
        if self.outbound is not None:
            self.outbound.to_element(element, "outbound")
        return element

    @classmethod
    def from_element(cls, element: etree._Element) -> Bandwidth:
        inbound, outbound = element.find("inbound"), element.find("outbound")
        return cls(
            inbound=None if inbound is None else Rate.from_element(inbound),
            outbound=None if outbound is None else Rate.from_element(outbound),
        )


@dataclass
class NetworkInterface:
    """A NIC on a libvirt network, or on a host bridge when `bridge` is set. `target_dev` is the host's
    side of it (libvirt names it, e.g. vnet0, while the domain runs)."""

    network: str = "default"
    bridge: str = ""
    model: str = "virtio"
    mac: str | None = None
    filterref: FilterRef | None = None
    target_dev: str | None = None
    bandwidth: Bandwidth | None = None

    def to_element(self, parent: etree._Element) -> etree._Element:
        interface = _sub(parent, "interface", type="bridge" if self.bridge else "network")
        if self.mac:
            _sub(interface, "mac", address=self.mac)
        if self.bridge:
            _sub(interface, "source", bridge=self.bridge)
        else:
            _sub(interface, "source", network=self.network)
        if self.target_dev:
            _sub(interface, "target", dev=self.target_dev)
        if self.model:
            _sub(interface, "model", type=self.model)
        if self.filterref is not None:
            self.filterref.to_element(interface)
        if self.bandwidth is not None:
            self.bandwidth.to_element(interface)
        return interface

    @classmethod
    def from_element(cls, element: etree._Element) -> NetworkInterface:
        filterref, bandwidth = element.find("filterref"), element.find("bandwidth")
        if element.get("type") == "bridge":
            source = {"bridge": _attribute(element, "source", "bridge")}
        else:  # libvirt also names the network's bridge in a running domain's source: not ours to keep
            source = {"network": _attribute(element, "source", "network")}
        return cls(
            **source,
            model=_attribute(element, "model", "type"),
            mac=_attribute(element, "mac", "address") or None,
            filterref=None if filterref is None else FilterRef.from_element(filterref),
            target_dev=_attribute(element, "target", "dev") or None,
            bandwidth=None if bandwidth is None else Bandwidth.from_element(bandwidth),
        )


@dataclass
class Serial:
    """A serial port on a host pseudo-terminal; with `log_file` the host also writes what the guest prints
    there to that file (the boot console log)."""

    type: str = "pty"
    port: int = 0
    log_file: str = ""

    def to_element(self, parent: etree._Element) -> etree._Element:
        serial = _sub(parent, "serial", type=self.type)
        if self.log_file:
            _sub(serial, "log", file=self.log_file, append="off")
        _sub(serial, "target", port=str(self.port))
        return serial

    @classmethod
    def from_element(cls, element: etree._Element) -> Serial:
        return cls(
            type=element.get("type", "pty"),
            port=_integer(_attribute(element, "target", "port", "0"), 0),
            log_file=_attribute(element, "log", "file"),
        )


@dataclass
class Console:
    """The guest's console, on the serial port `port` by default."""

    type: str = "pty"
    target_type: str = "serial"
    port: int = 0

    def to_element(self, parent: etree._Element) -> etree._Element:
        console = _sub(parent, "console", type=self.type)
        _sub(console, "target", type=self.target_type, port=str(self.port))
        return console

    @classmethod
    def from_element(cls, element: etree._Element) -> Console:
        return cls(
            type=element.get("type", "pty"),
            target_type=_attribute(element, "target", "type", "serial"),
            port=_integer(_attribute(element, "target", "port", "0"), 0),
        )


@dataclass
class Graphics:
    """A graphical console (VNC on the host's loopback by default, port chosen by libvirt). A domain with
    graphics also gets a VGA video device."""

    type: str = "vnc"
    listen: str = "127.0.0.1"
    port: int = -1
    autoport: bool = True
    # The VNC password (at most 8 characters: VNC's DES challenge uses no more); libvirt hides it from
    # XMLDesc unless asked for secure information.
    password: str = ""

    def to_element(self, parent: etree._Element) -> etree._Element:
        graphics = _sub(
            parent,
            "graphics",
            type=self.type,
            port=str(self.port),
            autoport="yes" if self.autoport else "no",
            listen=self.listen or None,
            passwd=self.password or None,
        )
        if self.listen:
            _sub(graphics, "listen", type="address", address=self.listen)
        return graphics

    @classmethod
    def from_element(cls, element: etree._Element) -> Graphics:
        return cls(
            type=element.get("type", "vnc"),
            listen=element.get("listen") or _attribute(element, "listen[@type='address']", "address"),
            port=_integer(element.get("port"), -1),
            autoport=element.get("autoport") == "yes",
            password=element.get("passwd", ""),
        )


GUEST_AGENT = "org.qemu.guest_agent.0"


@dataclass
class GuestAgentChannel:
    """The virtio channel the QEMU guest agent answers on (libvirt picks the host socket's path): what
    setting a user's password in a running guest goes through."""

    name: str = GUEST_AGENT

    def to_element(self, parent: etree._Element) -> etree._Element:
        channel = _sub(parent, "channel", type="unix")
        _sub(channel, "target", type="virtio", name=self.name)
        return channel

    @classmethod
    def from_devices(cls, devices: etree._Element) -> GuestAgentChannel | None:
        for channel in devices.findall("channel"):
            target = channel.find("target")
            if target is not None and target.get("type") == "virtio" and target.get("name") == GUEST_AGENT:
                return cls()
        return None


@dataclass
class KernelBoot:
    """Direct kernel boot: the host passes this kernel and initrd to the guest (no bootloader needed)."""

    kernel: str
    initrd: str
    cmdline: str = ""

    def to_element(self, os_element: etree._Element) -> None:
        _sub(os_element, "kernel", self.kernel)
        _sub(os_element, "initrd", self.initrd)
        if self.cmdline:
            _sub(os_element, "cmdline", self.cmdline)

    @classmethod
    def from_element(cls, os_element: etree._Element) -> KernelBoot | None:
        """The kernel boot of an `<os>` element, or None when the domain boots from its disk."""
        if os_element.find("kernel") is None:
            return None
        return cls(
            kernel=os_element.findtext("kernel", ""),
            initrd=os_element.findtext("initrd", ""),
            cmdline=os_element.findtext("cmdline", ""),
        )


@dataclass
class PanelMetadata:
    """The panel's element in a domain's `<metadata>`: which server the domain is."""

    server_id: str

    def to_element(self, metadata: etree._Element) -> etree._Element:
        return etree.SubElement(
            metadata, f"{{{METADATA_NS}}}server", {"id": self.server_id}, nsmap={METADATA_PREFIX: METADATA_NS}
        )

    @classmethod
    def from_element(cls, metadata: etree._Element | None) -> PanelMetadata | None:
        """The panel's metadata within a `<metadata>` element, or None when the panel did not write it
        (another application's elements there are not the panel's)."""
        element = None if metadata is None else metadata.find(f"{{{METADATA_NS}}}server")
        return None if element is None else cls(server_id=element.get("id"))


@dataclass
class Domain:
    """A guest as the panel defines it: its sizes, its devices and the panel's metadata."""

    name: str
    uuid: uuid.UUID
    domain_type: str
    vcpus: int
    memory_mib: int
    arch: str = "x86_64"
    # The panel's server id, written into the domain's metadata (the domain's UUID when empty).
    server_id: str = ""
    disks: list[Disk] = field(default_factory=list)
    interfaces: list[NetworkInterface] = field(default_factory=list)
    # graphics=True and graphics=False are accepted too: the default Graphics() and none.
    graphics: Graphics | None = field(default_factory=Graphics)
    kernel_boot: KernelBoot | None = None
    serial: Serial | None = field(default_factory=Serial)
    console: Console | None = field(default_factory=Console)
    guest_agent: GuestAgentChannel | None = field(default_factory=GuestAgentChannel)
    # Where the firmware boots from, in order (ignored with kernel_boot): the disk, or an attached installer
    # ISO's CD-ROM drive first. `machine` is the machine type (empty: libvirt's default, e.g. "pc").
    boot_devices: tuple[str, ...] = ("hd",)
    machine: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.graphics, bool):
            self.graphics = Graphics() if self.graphics else None

    @property
    def interface_devices(self) -> list[str]:
        """The host-side device names of the interfaces (libvirt fills them in while the domain runs)."""
        return [interface.target_dev for interface in self.interfaces if interface.target_dev]

    @property
    def disk_devices(self) -> list[str]:
        """The guest device names of the disks (CD-ROMs left out)."""
        return [disk.target_dev for disk in self.disks if disk.device == "disk" and disk.target_dev]

    def to_element(self) -> etree._Element:
        root = etree.Element("domain", type=self.domain_type)
        _sub(root, "name", self.name)
        _sub(root, "uuid", str(self.uuid))
        PanelMetadata(self.server_id or str(self.uuid)).to_element(_sub(root, "metadata"))
        _set_memory_mib(_sub(root, "memory"), self.memory_mib)
        _set_memory_mib(_sub(root, "currentMemory"), self.memory_mib)
        _sub(root, "vcpu", str(self.vcpus), placement="static")
        os_element = _sub(root, "os")
        _sub(os_element, "type", "hvm", arch=self.arch, machine=self.machine or None)
        if self.kernel_boot:
            self.kernel_boot.to_element(os_element)
        elif not any(disk.boot_order is not None for disk in self.disks):
            for device in self.boot_devices:
                _sub(os_element, "boot", dev=device)
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
        if self.serial is not None:
            self.serial.to_element(devices)
        if self.console is not None:
            self.console.to_element(devices)
        if self.guest_agent is not None:
            self.guest_agent.to_element(devices)
        if self.graphics is not None:
            self.graphics.to_element(devices)
            video = _sub(devices, "video")
            _sub(video, "model", type="vga")
        _sub(devices, "memballoon", model="virtio")
        return root

    def to_xml(self) -> str:
        return etree.tostring(self.to_element(), pretty_print=True, encoding="unicode")

    @classmethod
    def from_element(cls, root: etree._Element) -> Domain:
        metadata = PanelMetadata.from_element(root.find("metadata"))
        os_element = root.find("os")
        devices = root.find("devices")
        if devices is None:
            devices = etree.Element("devices")
        serial, console, graphics = devices.find("serial"), devices.find("console"), devices.find("graphics")
        return cls(
            name=root.findtext("name", ""),
            uuid=uuid.UUID(root.findtext("uuid", "")),
            domain_type=root.get("type", ""),
            vcpus=_integer(root.findtext("vcpu"), 0),
            memory_mib=_memory_mib(root.find("memory")),
            arch=_attribute(os_element, "type", "arch", "x86_64") if os_element is not None else "x86_64",
            server_id=metadata.server_id if metadata is not None else "",
            disks=[Disk.from_element(disk) for disk in devices.findall("disk")],
            interfaces=[
                NetworkInterface.from_element(interface) for interface in devices.findall("interface")
            ],
            graphics=None if graphics is None else Graphics.from_element(graphics),
            kernel_boot=None if os_element is None else KernelBoot.from_element(os_element),
            serial=None if serial is None else Serial.from_element(serial),
            console=None if console is None else Console.from_element(console),
            guest_agent=GuestAgentChannel.from_devices(devices),
            boot_devices=_boot_devices(os_element),
            machine=_attribute(os_element, "type", "machine") if os_element is not None else "",
        )

    @property
    def iso_path(self) -> str:
        """The file in the installer ISO's CD-ROM drive ("" when the domain has none)."""
        return next((disk.source_file for disk in self.disks if _is_iso_drive(disk)), "")


def parse(xml: str) -> Domain:
    """The domain an XML definition describes (the panel's own, or libvirt's XMLDesc of any domain)."""
    return Domain.from_element(_root(xml))


def interface_devices(xml: str) -> list[str]:
    """The host-side device names of a running domain's interfaces, read straight from its XML (what
    `parse(xml).interface_devices` says, without building the whole domain)."""
    return [str(dev) for dev in _root(xml).xpath("devices/interface/target/@dev") if dev]


def with_resources(xml: str, vcpus: int, memory_mib: int) -> str:
    """The same domain definition with other vCPU and memory sizes. The definition is libvirt's, so it is
    edited in place: everything else libvirt wrote in it is kept."""
    root = _root(xml)
    for tag in ("memory", "currentMemory"):
        element = root.find(tag)
        if element is None:
            element = etree.SubElement(root, tag)
        _set_memory_mib(element, memory_mib)
    maximum = root.find("maxMemory")
    if maximum is not None:
        root.remove(maximum)
    vcpu = root.find("vcpu")
    if vcpu is None:
        vcpu = etree.SubElement(root, "vcpu")
    vcpu.text = str(vcpus)
    vcpu.attrib.pop("current", None)
    return etree.tostring(root, encoding="unicode")


# The installer ISO's CD-ROM drive: its target on each bus (the panel's domains have no other CD-ROM drive;
# the cloud-init seed is a virtio disk).
ISO_TARGETS = {"ide": "hdc", "sata": "sda", "scsi": "sda"}


def cdrom_bus(machine: str) -> str:
    """The bus for a CD-ROM drive on this machine type: SATA on q35 (which has no IDE), IDE on the i440fx PC
    ("pc", "pc-i440fx-*", libvirt's default on x86 when none is named), SCSI elsewhere (aarch64's "virt")."""
    if "q35" in machine:
        return "sata"
    if not machine or machine == "pc" or machine.startswith("pc-"):
        return "ide"
    return "scsi"


def iso_drive(path: str, machine: str = "") -> Disk:
    """The read-only CD-ROM drive holding an installer ISO, on a bus the machine type has. Left out of
    snapshots: it is never written (every server on a host shares the one copy of the ISO)."""
    bus = cdrom_bus(machine)
    return Disk(
        source_file=path,
        target_dev=ISO_TARGETS[bus],
        bus=bus,
        device="cdrom",
        driver_type="raw",
        read_only=True,
        in_snapshots=False,
    )


def iso_boot_devices(iso_path: str) -> tuple[str, ...]:
    """The boot order with an installer ISO attached (its CD-ROM first, then the disk), or without one."""
    return ("cdrom", "hd") if iso_path else ("hd",)


def _is_iso_drive(disk: Disk) -> bool:
    return disk.device == "cdrom" and disk.target_dev in ISO_TARGETS.values()


def _boot_devices(os_element: etree._Element | None) -> tuple[str, ...]:
    """The `<boot dev=...>` order of an `<os>` element; a domain without one (kernel boot) reads as the
    default, the disk."""
    if os_element is None:
        return ("hd",)
    return tuple(boot.get("dev", "") for boot in os_element.findall("boot")) or ("hd",)


def has_iso(xml: str, iso_path: str) -> bool:
    """Whether the definition has exactly this installer ISO in its CD-ROM drive (`iso_path` empty: no such
    drive) and, unless it boots a kernel directly, the boot order that goes with it."""
    domain = parse(xml)
    if domain.iso_path != iso_path:
        return False
    return domain.kernel_boot is not None or domain.boot_devices == iso_boot_devices(iso_path)


def with_iso(xml: str, iso_path: str) -> str:
    """The same domain definition with the installer ISO `iso_path` in a read-only CD-ROM drive, booted
    before the disk; `iso_path` empty: without the drive, booting from the disk. The definition is
    libvirt's, so it is edited in place (as with_resources does), its machine type choosing the drive's
    bus. A domain that boots a kernel directly keeps doing so (firmware boot devices do not apply to it):
    the ISO is then only a CD-ROM drive the running system sees."""
    root = _root(xml)
    devices = root.find("devices")
    if devices is None:
        devices = etree.SubElement(root, "devices")
    for element in devices.findall("disk"):
        if _is_iso_drive(Disk.from_element(element)):
            devices.remove(element)
    os_element = root.find("os")
    if os_element is None:
        os_element = etree.SubElement(root, "os")
    if iso_path:
        disks = devices.findall("disk")
        drive = iso_drive(iso_path, _attribute(os_element, "type", "machine")).to_element(devices)
        if disks:  # next to the other disks, where libvirt lists them
            drive.tail = disks[-1].tail
            disks[-1].addnext(drive)
    if os_element.find("kernel") is None:
        for boot in os_element.findall("boot"):
            os_element.remove(boot)
        for device in iso_boot_devices(iso_path):
            _sub(os_element, "boot", dev=device)
    return etree.tostring(root, encoding="unicode")


def server_id_from_xml(xml: str) -> str | None:
    """The panel's server id from a domain's metadata, or None for a domain the panel did not create."""
    metadata = PanelMetadata.from_element(_root(xml).find("metadata"))
    return None if metadata is None else metadata.server_id


def relocated(
    xml: str,
    paths: dict[str, str],
    *,
    network: str,
    bridge: str = "",
    kernel_boot: KernelBoot | None = None,
    domain_type: str = "",
) -> str:
    """The same domain definition for another host (a migration's destination). libvirt's XML is edited in
    place (everything else it wrote is kept): each file disk's source becomes `paths[its source]` (a file
    disk missing from `paths` is a ValueError: it would point at the other host's file), a directly booted
    kernel's files become `kernel_boot`'s (a ValueError when it names none), every interface is put on
    `bridge`, or else on the libvirt network `network` (its host-side device name, a live domain's vnetN, is
    left to the new host), and with `domain_type` the domain type (kvm, qemu) becomes that."""
    root = _root(xml)
    if domain_type:
        root.set("type", domain_type)
    devices = root.find("devices")
    if devices is None:
        devices = etree.SubElement(root, "devices")
    for disk in devices.findall("disk"):
        source = disk.find("source")
        if disk.get("type") != "file" or source is None or not source.get("file"):
            continue
        if source.get("file") not in paths:
            raise ValueError(f"the disk {source.get('file')} has no counterpart on the other host")
        source.set("file", paths[source.get("file")])
        # libvirt's record of the file's backing chain (live XML) names the old host's files
        for backing in disk.findall("backingStore"):
            disk.remove(backing)
    os_element = root.find("os")
    if os_element is not None and os_element.find("kernel") is not None:
        if kernel_boot is None:
            raise ValueError("the domain boots a kernel directly, but none was named on the other host")
        position = os_element.index(os_element.find("kernel"))
        for tag in ("kernel", "initrd", "cmdline"):
            element = os_element.find(tag)
            if element is not None:
                os_element.remove(element)
        replacement = etree.Element("os")
        kernel_boot.to_element(replacement)
        for offset, element in enumerate(replacement):
            os_element.insert(position + offset, element)
    for interface in devices.findall("interface"):
        for element in interface.findall("source"):
            interface.remove(element)
        position = 1 if interface.find("mac") is not None else 0
        if bridge:
            interface.set("type", "bridge")
            source = etree.Element("source", bridge=bridge)
        else:
            interface.set("type", "network")
            source = etree.Element("source", network=network)
        interface.insert(position, source)
        target = interface.find("target")
        if target is not None and target.get("managed") != "no":
            interface.remove(target)
    return etree.tostring(root, encoding="unicode")
