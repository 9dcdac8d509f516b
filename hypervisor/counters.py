"""Usage counters of a host's running domains: network and disk bytes, CPU time and vCPUs (metering
reads them)."""

from __future__ import annotations

from dataclasses import dataclass

import libvirt
from lxml import etree

from . import connection
from .models import Host

STATS = (
    libvirt.VIR_DOMAIN_STATS_STATE
    | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
    | libvirt.VIR_DOMAIN_STATS_VCPU
    | libvirt.VIR_DOMAIN_STATS_INTERFACE
    | libvirt.VIR_DOMAIN_STATS_BLOCK
)


@dataclass(frozen=True)
class Counters:
    """Cumulative counters of one running domain (from the domain's point of view: rx is inbound)."""

    domain_id: int
    rx_bytes: int
    tx_bytes: int
    cpu_ns: int
    rd_bytes: int
    wr_bytes: int
    vcpus: int


def _sum(stats: dict, prefix: str, count_key: str, field: str) -> int:
    return sum(int(stats.get(f"{prefix}.{i}.{field}", 0)) for i in range(int(stats.get(count_key, 0))))


def _from_stats(domain: libvirt.virDomain, stats: dict) -> Counters:
    return Counters(
        domain_id=domain.ID(),
        rx_bytes=_sum(stats, "net", "net.count", "rx.bytes"),
        tx_bytes=_sum(stats, "net", "net.count", "tx.bytes"),
        cpu_ns=int(stats.get("cpu.time", 0)),
        rd_bytes=_sum(stats, "block", "block.count", "rd.bytes"),
        wr_bytes=_sum(stats, "block", "block.count", "wr.bytes"),
        vcpus=int(stats.get("vcpu.current", 0)) or 1,
    )


def _devices(xml: str) -> tuple[list[str], list[str]]:
    """The host-side names of a running domain's interfaces and the guest names of its disks (CD-ROMs left
    out): what xml.domain's `interface_devices` and `disk_devices` give, read without building the whole
    definition (this runs for every domain of a simulated host at every metering)."""
    devices = etree.fromstring(xml.encode()).find("devices")
    if devices is None:
        return [], []
    interfaces = [target.get("dev") for target in devices.iterfind("interface/target")]
    disks = [
        target.get("dev")
        for disk in devices.iterfind("disk")
        if disk.get("device", "disk") == "disk" and (target := disk.find("target")) is not None
    ]
    return [name for name in interfaces if name], [name for name in disks if name]


def _one_by_one(domain: libvirt.virDomain) -> Counters:
    """For drivers whose bulk statistics lack interfaces or CPU (libvirt's simulated host)."""
    interfaces, disks = _devices(domain.XMLDesc(0))
    rx = tx = rd = wr = 0
    for device in interfaces:
        stats = domain.interfaceStats(device)
        rx, tx = rx + stats[0], tx + stats[4]
    for device in disks:
        stats = domain.blockStats(device)
        rd, wr = rd + stats[1], wr + stats[3]
    _state, _max, _memory, vcpus, cpu_ns = domain.info()
    return Counters(domain.ID(), rx, tx, cpu_ns, rd, wr, vcpus or 1)


def collect(host: Host) -> dict[str, Counters]:
    """Counters of every running domain on the host by UUID, from one bulk statistics call (with a
    per-domain fallback where the driver's bulk statistics lack them)."""

    def work(conn: libvirt.virConnect) -> dict[str, Counters]:
        result = {}
        flags = libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
        for domain, stats in conn.getAllDomainStats(STATS, flags):
            if "cpu.time" in stats or "net.count" in stats:
                result[domain.UUIDString()] = _from_stats(domain, stats)
            else:
                result[domain.UUIDString()] = _one_by_one(domain)
        return result

    return connection.run(host, work)
