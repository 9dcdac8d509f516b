"""Driver operations on one host. Every step looks at the hypervisor before acting, so running a step
twice (a retried or redelivered task) does no harm, and each libvirt call runs under a timeout.

Hypervisor code knows a server only as a consumer UUID plus plain resource numbers.
"""

from __future__ import annotations

import time
import uuid as uuid_module
from dataclasses import dataclass

import libvirt
from django.conf import settings

from . import connection
from .connection import HypervisorError
from .models import Host
from .xml.domain import Disk, Domain, NetworkInterface
from .xml.storage import GIB, DirPool, Volume

DEFAULT_POOL_PATH = "/var/lib/libvirt/images"

POWER_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "running",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting_down",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
}


@dataclass(frozen=True)
class DomainRequest:
    """What the panel asks a host to run, in plain numbers."""

    uuid: uuid_module.UUID
    name: str
    vcpus: int
    memory_mib: int
    disk_gib: int

    @property
    def volume_name(self) -> str:
        return f"{self.uuid}.qcow2"


def _find_domain(conn: libvirt.virConnect, uuid: uuid_module.UUID) -> libvirt.virDomain | None:
    try:
        return conn.lookupByUUIDString(str(uuid))
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def _find_volume(pool: libvirt.virStoragePool, name: str) -> libvirt.virStorageVol | None:
    try:
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return None
        raise


def ensure_pool(conn: libvirt.virConnect, name: str, path: str = "") -> libvirt.virStoragePool:
    """The named storage pool, active. A missing pool is created as a `dir` pool at `path` when the admin
    gave one, and `default` at the libvirt convention's path; any other missing pool is an error."""
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
            raise
        if not path and name != "default":
            raise HypervisorError(f"no storage pool named {name}") from exc
        pool = conn.storagePoolDefineXML(DirPool(name, path or DEFAULT_POOL_PATH).to_xml(), 0)
        try:
            pool.build(0)  # a dir pool: creates the directory if it is missing
            pool.setAutostart(1)
            pool.create(0)
        except libvirt.libvirtError:
            pool.undefine()  # leave nothing half-made behind
            raise
    if not pool.isActive():
        pool.create(0)
    return pool


def ensure_network(conn: libvirt.virConnect, name: str) -> libvirt.virNetwork:
    try:
        network = conn.networkLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_NETWORK:
            raise
        raise HypervisorError(f"no network named {name}") from exc
    if not network.isActive():
        network.create()
    return network


def create_disk(host: Host, request: DomainRequest) -> str:
    """Create the server's disk volume unless it exists; return its path."""

    def work(conn: libvirt.virConnect) -> str:
        pool = ensure_pool(conn, host.storage_pool, host.storage_pool_path)
        volume = _find_volume(pool, request.volume_name)
        if volume is None:
            pool.refresh(0)
            volume = _find_volume(pool, request.volume_name)
        if volume is None:
            volume = pool.createXML(Volume(request.volume_name, request.disk_gib * GIB).to_xml(), 0)
        return volume.path()

    return connection.run(host, work)


def domain_xml(host: Host, request: DomainRequest, disk_path: str) -> str:
    domain = Domain(
        name=request.name,
        uuid=request.uuid,
        domain_type=host.domain_type or "qemu",
        arch=host.arch or "x86_64",
        vcpus=request.vcpus,
        memory_mib=request.memory_mib,
        disks=[Disk(source_file=disk_path)],
        interfaces=[NetworkInterface(network=host.network, bridge=host.bridge)],
    )
    return domain.to_xml()


def define_domain(host: Host, request: DomainRequest, disk_path: str) -> None:
    """Define the domain unless a domain with this UUID exists already."""

    def work(conn: libvirt.virConnect) -> None:
        if _find_domain(conn, request.uuid) is not None:
            return
        if not host.bridge:
            ensure_network(conn, host.network)
        conn.defineXML(domain_xml(host, request, disk_path))

    connection.run(host, work)


def start(host: Host, uuid: uuid_module.UUID) -> str:
    """Start the domain unless it runs; return its power state."""

    def work(conn: libvirt.virConnect) -> str:
        domain = _require_domain(conn, uuid)
        if not domain.isActive():
            domain.create()
        return POWER_STATES.get(domain.state()[0], "nostate")

    return connection.run(host, work, timeout=max(60.0, settings.LIBVIRT_TIMEOUT))


def power_off(host: Host, uuid: uuid_module.UUID) -> str:
    def work(conn: libvirt.virConnect) -> str:
        domain = _require_domain(conn, uuid)
        if domain.isActive():
            domain.destroy()
        return POWER_STATES.get(domain.state()[0], "nostate")

    return connection.run(host, work)


def shutdown(host: Host, uuid: uuid_module.UUID, timeout: float) -> bool:
    """Ask the guest to shut down (ACPI); power it off after `timeout` seconds. True if it was graceful."""

    def request(conn: libvirt.virConnect) -> bool:
        domain = _require_domain(conn, uuid)
        if not domain.isActive():
            return False
        domain.shutdown()
        return True

    if not connection.run(host, request):
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not connection.run(host, lambda conn: _require_domain(conn, uuid).isActive()):
            return True
        time.sleep(1)
    power_off(host, uuid)
    return False


def reboot(host: Host, uuid: uuid_module.UUID) -> None:
    """Reset the running domain (a hard reboot that works whatever the guest runs)."""

    def work(conn: libvirt.virConnect) -> None:
        domain = _require_domain(conn, uuid)
        if not domain.isActive():
            raise HypervisorError("the server is not running")
        domain.reset(0)

    connection.run(host, work)


def destroy(host: Host, request: DomainRequest) -> None:
    """Remove the domain and its disk, whatever of them exists."""

    def work(conn: libvirt.virConnect) -> None:
        domain = _find_domain(conn, request.uuid)
        if domain is not None:
            if domain.isActive():
                domain.destroy()
            flags = (
                libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
            )
            try:
                domain.undefineFlags(flags)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
                    raise
                domain.undefine()
        try:
            pool = conn.storagePoolLookupByName(host.storage_pool)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
                return
            raise
        if not pool.isActive():
            pool.create(0)
        volume = _find_volume(pool, request.volume_name)
        if volume is not None:
            volume.delete(0)

    connection.run(host, work)


def power_state(host: Host, uuid: uuid_module.UUID) -> str | None:
    """The domain's power state, or None when no such domain exists."""

    def work(conn: libvirt.virConnect) -> str | None:
        domain = _find_domain(conn, uuid)
        return None if domain is None else POWER_STATES.get(domain.state()[0], "nostate")

    return connection.run(host, work)


def domain_states(host: Host) -> dict[str, str]:
    """Every domain on the host by UUID, with its power state, in one listing call."""

    def work(conn: libvirt.virConnect) -> dict[str, str]:
        return {
            domain.UUIDString(): POWER_STATES.get(domain.state()[0], "nostate")
            for domain in conn.listAllDomains(0)
        }

    return connection.run(host, work)


def _require_domain(conn: libvirt.virConnect, uuid: uuid_module.UUID) -> libvirt.virDomain:
    domain = _find_domain(conn, uuid)
    if domain is None:
        raise HypervisorError("the virtual machine does not exist on its host")
    return domain
