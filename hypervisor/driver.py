"""Driver operations on one host. Every step looks at the hypervisor before acting, so running a step
twice (a retried or redelivered task) does no harm, and each libvirt call runs under a timeout.

Hypervisor code knows a server only as a consumer UUID plus plain resource numbers.
"""

from __future__ import annotations

import threading
import time
import uuid as uuid_module
from dataclasses import dataclass

import libvirt
from django.conf import settings

from . import connection, secrets
from .connection import HypervisorError
from .models import Host
from .power_state import PowerState, from_libvirt
from .xml.domain import (
    Disk,
    Domain,
    Graphics,
    KernelBoot,
    NetworkInterface,
    Serial,
    clean_traffic,
    with_resources,
)
from .xml.snapshot import Snapshot
from .xml.storage import GIB, DirPool, Volume

DEFAULT_POOL_PATH = "/var/lib/libvirt/images"


@dataclass(frozen=True)
class DomainRequest:
    """What the panel asks a host to run, in plain numbers."""

    uuid: uuid_module.UUID
    name: str
    vcpus: int
    memory_mib: int
    disk_gib: int
    mac: str = ""
    # The IPv4 addresses the guest may send from (the anti-spoofing filter is bound to them).
    ipv4: tuple[str, ...] = ()
    kernel_boot: KernelBoot | None = None

    @property
    def volume_name(self) -> str:
        return f"{self.uuid}.qcow2"

    @property
    def seed_volume_name(self) -> str:
        return f"{self.uuid}-seed.iso"

    @property
    def console_log(self) -> str:
        return f"/var/log/libvirt/qemu/{self.name}-console.log"


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


def _create_volume(pool: libvirt.virStoragePool, spec: Volume) -> libvirt.virStorageVol:
    """Create the volume, or take the one of that name that exists already: made meanwhile by another
    delivery of the same task, or a file in the pool's directory that libvirt has not listed yet (then,
    and only then, the pool is refreshed, waiting while it is busy)."""
    try:
        return pool.createXML(spec.to_xml(), 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_STORAGE_VOL_EXIST, libvirt.VIR_ERR_OPERATION_INVALID):
            raise
        refused = exc
    if refused.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID:  # "volume target path ... exists"
        connection.when_pool_idle(lambda: pool.refresh(0))
    volume = _find_volume(pool, spec.name)
    if volume is None:
        raise refused
    return volume


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
            connection.when_pool_idle(pool.undefine)  # leave nothing half-made behind
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


def create_disk(host: Host, request: DomainRequest, base_path: str = "") -> str:
    """Create the server's disk unless it exists (a copy-on-write overlay on `base_path`, or blank), sized
    to the plan; return its path."""

    def work(conn: libvirt.virConnect) -> str:
        pool = ensure_pool(conn, host.storage_pool, host.storage_pool_path)
        volume = _find_volume(pool, request.volume_name)
        if volume is None:
            spec = Volume(request.volume_name, request.disk_gib * GIB, backing_path=base_path)
            volume = _create_volume(pool, spec)
        return volume.path()

    return connection.run(host, work, timeout=max(120.0, settings.LIBVIRT_TIMEOUT))


def delete_disk(host: Host, request: DomainRequest) -> None:
    """Remove the server's disk (for a rebuild); the domain must be shut off."""

    def work(conn: libvirt.virConnect) -> None:
        pool = ensure_pool(conn, host.storage_pool, host.storage_pool_path)
        volume = _find_volume(pool, request.volume_name)
        if volume is not None:
            volume.delete(0)

    connection.run(host, work)


def write_seed(host: Host, request: DomainRequest, iso: bytes, replace: bool = False) -> str:
    """Write the server's cloud-init seed volume with these bytes unless it exists (`replace`: write it
    anew, for a rebuild); return its path."""

    def work(conn: libvirt.virConnect) -> str:
        pool = ensure_pool(conn, host.storage_pool, host.storage_pool_path)
        old = _find_volume(pool, request.seed_volume_name)
        if old is not None and not replace:
            return old.path()
        if old is not None:
            old.delete(0)
        volume = pool.createXML(Volume(request.seed_volume_name, len(iso), format="raw").to_xml(), 0)
        if host.transport != "test":  # the simulated host stores no data
            stream = conn.newStream(0)
            volume.upload(stream, 0, len(iso), 0)
            stream.send(iso)
            stream.finish()
        return volume.path()

    return connection.run(host, work)


def resize_disk(host: Host, request: DomainRequest) -> None:
    """Grow the server's disk to the request's size (never shrinks), live when the domain runs."""
    size = request.disk_gib * GIB

    def work(conn: libvirt.virConnect) -> None:
        pool = ensure_pool(conn, host.storage_pool, host.storage_pool_path)
        volume = _find_volume(pool, request.volume_name)
        if volume is None:
            raise HypervisorError("the server's disk is missing on its host")
        if volume.info()[1] >= size:
            return
        if host.transport == "test":
            return  # libvirt's simulated host cannot resize volumes (it holds no data)
        domain = _find_domain(conn, request.uuid)
        try:
            if domain is not None and domain.isActive():
                # The running guest sees the new size at once.
                domain.blockResize(volume.path(), size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
            else:
                volume.resize(size, 0)
        except libvirt.libvirtError as exc:
            if "which has snapshots" in str(exc):  # a qcow2 version 2 disk (made before compat 1.1 was used)
                raise HypervisorError(
                    "the disk is a qcow2 version 2 image, which cannot grow while it has internal snapshots"
                ) from exc
            raise

    connection.run(host, work)


def domain_xml(host: Host, request: DomainRequest, disk_path: str, seed_path: str = "") -> str:
    disks = [Disk(source_file=disk_path)]
    if seed_path:
        # A virtio disk, not a CD-ROM: cloud kernels often lack the SATA (AHCI) driver. Read-only and left
        # out of snapshots (internal snapshots need every snapshotted disk to be qcow2).
        disks.append(
            Disk(
                source_file=seed_path, target_dev="vdb", driver_type="raw", read_only=True, in_snapshots=False
            )
        )
    domain = Domain(
        name=request.name,
        uuid=request.uuid,
        domain_type=host.domain_type or "qemu",
        arch=host.arch or "x86_64",
        vcpus=request.vcpus,
        memory_mib=request.memory_mib,
        disks=disks,
        interfaces=[
            NetworkInterface(
                network=host.network,
                bridge=host.bridge,
                mac=request.mac or None,
                filterref=clean_traffic(request.ipv4),
            )
        ],
        kernel_boot=request.kernel_boot,
        serial=Serial(log_file="" if host.transport == "test" else request.console_log),
        # VNC on the host's loopback only, with a password of its own (hypervisor.secrets).
        graphics=Graphics(password=secrets.console_password(request.uuid)),
    )
    return domain.to_xml()


def define_domain(
    host: Host, request: DomainRequest, disk_path: str, seed_path: str = "", replace: bool = False
) -> None:
    """Define the domain unless a domain with this UUID exists already (`replace`: define it anew, which
    updates the persistent configuration of an existing domain: resize, rebuild)."""

    def work(conn: libvirt.virConnect) -> None:
        if not replace and _find_domain(conn, request.uuid) is not None:
            return
        if not host.bridge:
            ensure_network(conn, host.network)
        conn.defineXML(domain_xml(host, request, disk_path, seed_path))

    connection.run(host, work)


def start(host: Host, uuid: uuid_module.UUID) -> PowerState:
    """Start the domain unless it runs; return its power state."""

    def work(conn: libvirt.virConnect) -> PowerState:
        domain = _require_domain(conn, uuid)
        if not domain.isActive():
            domain.create()
        return from_libvirt(domain.state()[0])

    return connection.run(host, work, timeout=max(60.0, settings.LIBVIRT_TIMEOUT))


def power_off(host: Host, uuid: uuid_module.UUID) -> PowerState:
    def work(conn: libvirt.virConnect) -> PowerState:
        domain = _require_domain(conn, uuid)
        if domain.isActive():
            domain.destroy()
        return from_libvirt(domain.state()[0])

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


def reboot(host: Host, uuid: uuid_module.UUID, timeout: float) -> bool:
    """Reboot through ACPI and wait for the guest to reboot; reset it when it does not within `timeout`
    seconds (or has no ACPI). Returns True when the guest rebooted by itself."""
    if host.transport == "test":
        connection.run(host, lambda conn: _require_running(conn, uuid).reboot(0))
        return True
    rebooted = threading.Event()

    def request(conn: libvirt.virConnect) -> int | None:
        domain = _require_running(conn, uuid)
        callback = conn.domainEventRegisterAny(
            domain, libvirt.VIR_DOMAIN_EVENT_ID_REBOOT, lambda *_args: rebooted.set(), None
        )
        try:
            domain.reboot(libvirt.VIR_DOMAIN_REBOOT_ACPI_POWER_BTN)
        except libvirt.libvirtError:
            conn.domainEventDeregisterAny(callback)
            domain.reset(0)
            return None
        return callback

    callback = connection.run(host, request)
    if callback is None:
        return False
    graceful = rebooted.wait(timeout)
    connection.run(host, lambda conn: conn.domainEventDeregisterAny(callback))
    if not graceful:
        connection.run(host, lambda conn: _require_running(conn, uuid).reset(0))
    return graceful


def set_resources(host: Host, uuid: uuid_module.UUID, vcpus: int, memory_mib: int) -> None:
    """Change the persistent vCPU and memory sizes; they apply at the next start of the domain."""

    def work(conn: libvirt.virConnect) -> None:
        domain = _require_domain(conn, uuid)
        xml = domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
        conn.defineXML(with_resources(xml, vcpus, memory_mib))

    connection.run(host, work)


def current_resources(host: Host, uuid: uuid_module.UUID) -> tuple[int, int]:
    """(vCPUs, memory MiB) the running domain has now."""

    def work(conn: libvirt.virConnect) -> tuple[int, int]:
        _state, _max_memory, memory_kib, vcpus, _cpu_time = _require_domain(conn, uuid).info()
        return vcpus, memory_kib // 1024

    return connection.run(host, work)


def create_snapshot(host: Host, uuid: uuid_module.UUID, name: str, description: str = "") -> None:
    """An internal snapshot (disk, and memory when running) unless one of that name exists."""

    def work(conn: libvirt.virConnect) -> None:
        domain = _require_domain(conn, uuid)
        if name in domain.snapshotListNames(0):
            return
        domain.snapshotCreateXML(Snapshot(name, description).to_xml(), 0)

    connection.run(host, work, timeout=max(600.0, settings.LIBVIRT_TIMEOUT))


def revert_to_snapshot(host: Host, uuid: uuid_module.UUID, name: str) -> PowerState:
    def work(conn: libvirt.virConnect) -> PowerState:
        domain = _require_domain(conn, uuid)
        domain.revertToSnapshot(domain.snapshotLookupByName(name, 0), 0)
        return from_libvirt(domain.state()[0])

    return connection.run(host, work, timeout=max(600.0, settings.LIBVIRT_TIMEOUT))


def delete_snapshot(host: Host, uuid: uuid_module.UUID, name: str) -> None:
    def work(conn: libvirt.virConnect) -> None:
        domain = _require_domain(conn, uuid)
        if name in domain.snapshotListNames(0):
            domain.snapshotLookupByName(name, 0).delete(0)

    connection.run(host, work, timeout=max(300.0, settings.LIBVIRT_TIMEOUT))


def drop_snapshots(host: Host, uuid: uuid_module.UUID) -> None:
    """Delete every snapshot of the domain (before its disk is replaced by a rebuild)."""

    def work(conn: libvirt.virConnect) -> None:
        domain = _find_domain(conn, uuid)
        if domain is None:
            return
        for name in domain.snapshotListNames(0):
            snapshot = domain.snapshotLookupByName(name, 0)
            try:
                snapshot.delete(0)
            except libvirt.libvirtError:
                snapshot.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)

    connection.run(host, work, timeout=max(300.0, settings.LIBVIRT_TIMEOUT))


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
                domain.undefineFlags(flags & ~libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        try:
            pool = conn.storagePoolLookupByName(host.storage_pool)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
                return
            raise
        if not pool.isActive():
            pool.create(0)
        for name in (request.volume_name, request.seed_volume_name):
            volume = _find_volume(pool, name)
            if volume is not None:
                volume.delete(0)

    connection.run(host, work)


def power_state(host: Host, uuid: uuid_module.UUID) -> PowerState | None:
    """The domain's power state, or None when no such domain exists."""

    def work(conn: libvirt.virConnect) -> PowerState | None:
        domain = _find_domain(conn, uuid)
        return None if domain is None else from_libvirt(domain.state()[0])

    return connection.run(host, work)


def domain_states(host: Host) -> dict[str, PowerState]:
    """Every domain on the host by UUID, with its power state, in one listing call."""

    def work(conn: libvirt.virConnect) -> dict[str, PowerState]:
        # One round trip for all domains (state() per domain would be one each on a remote host).
        return {
            domain.UUIDString(): from_libvirt(stats["state.state"])
            for domain, stats in conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE, 0)
        }

    return connection.run(host, work)


def _require_running(conn: libvirt.virConnect, uuid: uuid_module.UUID) -> libvirt.virDomain:
    domain = _require_domain(conn, uuid)
    if not domain.isActive():
        raise HypervisorError("the server is not running")
    return domain


def _require_domain(conn: libvirt.virConnect, uuid: uuid_module.UUID) -> libvirt.virDomain:
    domain = _find_domain(conn, uuid)
    if domain is None:
        raise HypervisorError("the virtual machine does not exist on its host")
    return domain
