"""Probing a host: what it is, what it can run, and how big it is."""

from __future__ import annotations

from dataclasses import dataclass, field

import libvirt

from . import connection, network_filter
from .driver import ensure_network, ensure_pool
from .models import Host
from .xml.capabilities import Capabilities
from .xml.domain import ANTI_SPOOFING_FILTER
from .xml.storage import GIB


@dataclass
class ProbeResult:
    domain_type: str
    arch: str
    cpu_model: str
    vcpus_total: int
    memory_mib_total: int
    memory_mib_free: int
    disk_gib_total: int
    libvirt_version: str
    hypervisor_version: str
    inventory: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _version(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def probe(host: Host) -> ProbeResult:
    """Read the host's capabilities, size, storage pool and network. Raises HypervisorError."""

    def work(conn: libvirt.virConnect) -> ProbeResult:
        caps = Capabilities.parse(conn.getCapabilities())
        domain_type = caps.domain_type(force_emulation=host.force_emulation)
        if domain_type is None:
            raise connection.HypervisorError("the host offers no hardware virtual machine (hvm) guests")
        warnings = []
        if domain_type == "qemu":
            warnings.append(
                "emulation forced by an admin: domains run under QEMU emulation"
                if host.force_emulation and caps.has_kvm
                else "KVM not available: domains will run under emulation"
            )
        require_anti_spoofing_filter(conn)
        info = conn.getInfo()  # [model, memory MiB, cpus, mhz, nodes, sockets, cores, threads]
        pool = ensure_pool(conn, host.storage_pool, host.storage_pool_path)
        inventory = take_inventory(conn)
        if host.bridge:
            if inventory["bridges"] is not None and host.bridge not in inventory["bridges"]:
                warnings.append(f"no bridge named {host.bridge} was listed by the host")
        else:
            ensure_network(conn, host.network)
        pool_info = pool.info()  # [state, capacity, allocation, available] in bytes
        try:
            hypervisor_version = f"{conn.getType()} {_version(conn.getVersion())}"
        except libvirt.libvirtError:
            hypervisor_version = conn.getType()
        return ProbeResult(
            domain_type=domain_type,
            arch=caps.guest_arch(),
            cpu_model=caps.cpu_model or str(info[0]),
            vcpus_total=int(info[2]),
            memory_mib_total=int(info[1]),
            memory_mib_free=int(conn.getFreeMemory() // (1024 * 1024)),
            disk_gib_total=int(pool_info[1] // GIB),
            libvirt_version=_version(conn.getLibVersion()),
            hypervisor_version=hypervisor_version,
            inventory=inventory,
            warnings=warnings,
        )

    return connection.run(host, work)


def require_anti_spoofing_filter(conn: libvirt.virConnect) -> None:
    """Every server's interface is bound to a network filter of its own made of libvirt's stock filters
    (hypervisor.network_filter: clean-traffic's parts, IPv6 and its firewall), and domains defined before
    reference clean-traffic itself: a host without them would fail every create, or worse, so it takes no
    servers. libvirt's simulated driver has no filters at all."""
    try:
        missing = network_filter.missing_stock_filters(conn)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT and conn.getType().upper() == "TEST":
            return
        if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
            raise
        missing, cause = list(network_filter.STOCK_FILTERS), exc
    else:
        cause = None
    if missing:
        raise connection.HypervisorError(
            f"the host lacks the network filters {', '.join(missing)}, of which every server's interface "
            f"filter against address spoofing is made (the {ANTI_SPOOFING_FILTER} family; on Debian: install "
            "libvirt-daemon-config-nwfilter and iptables)"
        ) from cause


def take_inventory(conn: libvirt.virConnect) -> dict:
    """Storage pools, networks and (where the host lists them) bridges, for the admin to choose from."""
    pools = []
    for pool in conn.listAllStoragePools(0):
        state, capacity, _allocation, available = pool.info()
        pools.append(
            {
                "name": pool.name(),
                "active": bool(pool.isActive()),
                "capacity_gib": capacity // GIB,
                "available_gib": available // GIB,
            }
        )
    networks = [
        {"name": network.name(), "active": bool(network.isActive())} for network in conn.listAllNetworks(0)
    ]
    try:
        bridges = sorted(
            interface.name()
            for interface in conn.listAllInterfaces(0)
            if interface.name().startswith(("br", "vmbr", "virbr"))
        )
    except libvirt.libvirtError:
        bridges = None  # this host's libvirt does not list interfaces
    return {"pools": pools, "networks": networks, "bridges": bridges}
