"""Driver operations on one host. Every step looks at the hypervisor before acting, so running a step
twice (a retried or redelivered task) does no harm, and each libvirt call runs under a timeout.

Hypervisor code knows a server only as a consumer UUID plus plain resource numbers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import uuid as uuid_module
from dataclasses import dataclass

import libvirt
from django.conf import settings

from . import connection, network_filter, secrets
from .connection import HypervisorError
from .models import Host
from .network_filter import FilterSpec
from .power_state import PowerState, from_libvirt
from .xml.domain import (
    Disk,
    Domain,
    FilterRef,
    Graphics,
    KernelBoot,
    NetworkInterface,
    Serial,
    clean_traffic,
    has_iso,
    iso_boot_devices,
    iso_drive,
    parse,
    with_iso,
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
    # An installer ISO (its base volume on the host) in a read-only CD-ROM drive, booted before the disk.
    iso_path: str = ""
    # The server's own network filter (anti-spoofing for both families and its firewall): the interface
    # references it, and defining the domain defines it first where it is missing. None: the interface
    # references libvirt's clean-traffic with `ipv4`, as domains did before servers had filters of their own.
    network_filter: FilterSpec | None = None

    @property
    def volume_name(self) -> str:
        return f"{self.uuid}.qcow2"

    @property
    def seed_volume_name(self) -> str:
        return f"{self.uuid}-seed.iso"

    @property
    def rescue_volume_name(self) -> str:
        """Rescue mode's throwaway overlay of the rescue system (the domain's first disk while in rescue)."""
        return f"{self.uuid}-rescue.qcow2"

    @property
    def rescue_seed_volume_name(self) -> str:
        return f"{self.uuid}-rescue-seed.iso"

    @property
    def console_log(self) -> str:
        return f"/var/log/libvirt/qemu/{self.name}-console.log"


def find_domain(conn: libvirt.virConnect, uuid: uuid_module.UUID | str) -> libvirt.virDomain | None:
    """The domain with this UUID on the connection, or None."""
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
    """Create the volume, or take the one of that name that exists already: made by an earlier attempt or
    another delivery of the same task (drivers refuse a second one with different codes), or a file in the
    pool's directory that libvirt has not listed yet (then, and only then, the pool is refreshed, waiting
    while it is busy). Created first, looked for only when refused: one round trip in the usual case."""
    try:
        return pool.createXML(spec.to_xml(), 0)
    except libvirt.libvirtError as exc:
        refused = exc
    volume = _find_volume(pool, spec.name)
    if volume is None and refused.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID:
        # "volume target path ... exists": a file libvirt has not listed yet
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
        # Created straight away (one round trip fewer than looking first): an existing disk is taken.
        spec = Volume(request.volume_name, request.disk_gib * GIB, backing_path=base_path)
        return _create_volume(pool, spec).path()

    return connection.run(host, work, timeout=max(120.0, settings.LIBVIRT_TIMEOUT))


def delete_disk(host: Host, request: DomainRequest) -> None:
    """Remove the server's disk (for a rebuild); the domain must be shut off."""

    def work(conn: libvirt.virConnect) -> None:
        pool = ensure_pool(conn, host.storage_pool, host.storage_pool_path)
        volume = _find_volume(pool, request.volume_name)
        if volume is not None:
            volume.delete(0)

    connection.run(host, work)


def write_seed(
    host: Host, request: DomainRequest, iso: bytes, replace: bool = False, volume_name: str = ""
) -> str:
    """Write the server's cloud-init seed volume with these bytes unless it exists (`replace`: write it
    anew, for a rebuild); return its path. `volume_name`: another seed volume (rescue mode's)."""
    name = volume_name or request.seed_volume_name

    def work(conn: libvirt.virConnect) -> str:
        pool = ensure_pool(conn, host.storage_pool, host.storage_pool_path)
        spec = Volume(name, len(iso), format="raw").to_xml()
        try:  # created first, looked for only when refused: one round trip in the usual case
            volume = pool.createXML(spec, 0)
        except libvirt.libvirtError:
            old = _find_volume(pool, name)
            if old is None:
                raise
            if not replace:
                return old.path()
            old.delete(0)
            volume = pool.createXML(spec, 0)
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
        domain = find_domain(conn, request.uuid)
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


def _interface_filter(request: DomainRequest) -> FilterRef:
    if request.network_filter is None:
        return clean_traffic(request.ipv4)
    return network_filter.interface_filterref(request.network_filter)


def _ensure_filters(conn: libvirt.virConnect, host: Host, request: DomainRequest) -> None:
    """Define the server's network filters where the host lacks them, before a domain that references them
    is defined. Filters that exist are left as they are: the panel's worker keeps them up to date
    (apply_network_filter), and what this request says may be older than what it applied meanwhile."""
    if request.network_filter is not None and host.transport != "test":  # no filters on a simulated host
        network_filter.define(conn, request.network_filter, only_missing=True)


def apply_network_filter(host: Host, spec: FilterSpec) -> None:
    """Make the host's filters of the server say what the spec says and bind its domain to them, live and in
    its definition; idempotent (a filter that says it already is not rewritten). A server without a domain
    on the host yet (or stopped) gets its filters defined all the same, for the domain that will use them.
    Raises HypervisorError."""
    if host.transport == "test":
        # libvirt's simulated driver has no network filter driver and cannot update a device: it keeps the
        # domain XML it was given, which references the server's filter already (domain_xml).
        return

    def work(conn: libvirt.virConnect) -> None:
        network_filter.define(conn, spec)
        domain = find_domain(conn, spec.uuid)
        if domain is not None:
            network_filter.bind(domain, spec)

    connection.run(host, work)


def remove_network_filters(host: Host, uuid: uuid_module.UUID) -> None:
    """Undefine the server's filters (after its domain is gone from the host, which `destroy` does with
    them); idempotent."""
    if host.transport == "test":
        return  # no network filter driver on the simulated host (see apply_network_filter)
    connection.run(host, lambda conn: network_filter.undefine(conn, uuid))


def domain_xml(
    host: Host, request: DomainRequest, disk_path: str, seed_path: str = "", machine: str = ""
) -> str:
    """`machine`: the machine type to keep (an attached ISO's drive is on a bus it has)."""
    disks = [Disk(source_file=disk_path)]
    if seed_path:
        # A virtio disk, not a CD-ROM: cloud kernels often lack the SATA (AHCI) driver. Read-only and left
        # out of snapshots (internal snapshots need every snapshotted disk to be qcow2).
        disks.append(
            Disk(
                source_file=seed_path, target_dev="vdb", driver_type="raw", read_only=True, in_snapshots=False
            )
        )
    if request.iso_path:
        disks.append(iso_drive(request.iso_path, machine))
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
                filterref=_interface_filter(request),
            )
        ],
        kernel_boot=request.kernel_boot,
        serial=Serial(log_file="" if host.transport == "test" else request.console_log),
        # VNC on the host's loopback only, with a password of its own (hypervisor.secrets).
        graphics=Graphics(password=secrets.console_password(request.uuid)),
        boot_devices=iso_boot_devices(request.iso_path),
        machine=machine if request.iso_path else "",
    )
    return domain.to_xml()


def define_domain(
    host: Host, request: DomainRequest, disk_path: str, seed_path: str = "", replace: bool = False
) -> None:
    """Define the domain unless a domain with this UUID exists already (`replace`: define it anew, which
    updates the persistent configuration of an existing domain: resize, rebuild; a caller that knows no
    such domain exists passes it too, saving the look)."""

    def work(conn: libvirt.virConnect) -> None:
        domain = find_domain(conn, request.uuid) if not replace or request.iso_path else None
        if not replace and domain is not None:
            return
        if not host.bridge:
            ensure_network(conn, host.network)
        _ensure_filters(conn, host, request)
        machine = ""
        if request.iso_path:
            # The ISO's drive goes on a bus the machine type has, and libvirt chooses the machine type of a
            # new domain: a new one is defined without the drive first. A redefinition keeps its machine.
            if domain is None:
                without = dataclasses.replace(request, iso_path="")
                domain = conn.defineXML(domain_xml(host, without, disk_path, seed_path))
            machine = parse(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).machine
        conn.defineXML(domain_xml(host, request, disk_path, seed_path, machine))

    connection.run(host, work)


def set_iso(host: Host, uuid: uuid_module.UUID, iso_path: str) -> None:
    """Put the installer ISO `iso_path` (its base volume on the host) in the domain's read-only CD-ROM drive,
    booted before the disk; `iso_path` empty: remove the drive, boot from the disk. Changes the persistent
    definition (libvirt's own, edited in place), which a running domain takes at its next start; defines
    nothing when it says so already."""

    def work(conn: libvirt.virConnect) -> None:
        domain = require_domain(conn, uuid)
        xml = domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
        if not has_iso(xml, iso_path):
            conn.defineXML(with_iso(xml, iso_path))

    connection.run(host, work)


def running_iso(host: Host, uuid: uuid_module.UUID) -> str | None:
    """The installer ISO in the running domain's CD-ROM drive ("" for none); None when it is not running."""

    def work(conn: libvirt.virConnect) -> str | None:
        domain = require_domain(conn, uuid)
        return parse(domain.XMLDesc(0)).iso_path if domain.isActive() else None

    return connection.run(host, work)


def start(host: Host, uuid: uuid_module.UUID) -> PowerState:
    """Start the domain unless it runs; return its power state."""

    def work(conn: libvirt.virConnect) -> PowerState:
        domain = require_domain(conn, uuid)
        try:  # started straight away (one round trip fewer than asking first)
            domain.create()
        except libvirt.libvirtError:
            if not domain.isActive():  # else it was running already (drivers say so with different codes)
                raise
        return from_libvirt(domain.state()[0])

    return connection.run(host, work, timeout=max(60.0, settings.LIBVIRT_TIMEOUT))


def power_off(host: Host, uuid: uuid_module.UUID) -> PowerState:
    def work(conn: libvirt.virConnect) -> PowerState:
        domain = require_domain(conn, uuid)
        if domain.isActive():
            domain.destroy()
        return from_libvirt(domain.state()[0])

    return connection.run(host, work)


def shutdown(host: Host, uuid: uuid_module.UUID, timeout: float) -> bool:
    """Ask the guest to shut down (ACPI); power it off after `timeout` seconds. True if it was graceful."""

    def request(conn: libvirt.virConnect) -> bool:
        domain = require_domain(conn, uuid)
        if not domain.isActive():
            return False
        domain.shutdown()
        return True

    if not connection.run(host, request):
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not connection.run(host, lambda conn: require_domain(conn, uuid).isActive()):
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
        domain = require_domain(conn, uuid)
        xml = domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
        conn.defineXML(with_resources(xml, vcpus, memory_mib))

    connection.run(host, work)


def current_resources(host: Host, uuid: uuid_module.UUID) -> tuple[int, int]:
    """(vCPUs, memory MiB) the running domain has now."""

    def work(conn: libvirt.virConnect) -> tuple[int, int]:
        _state, _max_memory, memory_kib, vcpus, _cpu_time = require_domain(conn, uuid).info()
        return vcpus, memory_kib // 1024

    return connection.run(host, work)


def create_snapshot(host: Host, uuid: uuid_module.UUID, name: str, description: str = "") -> None:
    """An internal snapshot (disk, and memory when running) unless one of that name exists."""

    def work(conn: libvirt.virConnect) -> None:
        domain = require_domain(conn, uuid)
        if name in domain.snapshotListNames(0):
            return
        domain.snapshotCreateXML(Snapshot(name, description).to_xml(), 0)

    connection.run(host, work, timeout=max(600.0, settings.LIBVIRT_TIMEOUT))


def revert_to_snapshot(host: Host, uuid: uuid_module.UUID, name: str) -> PowerState:
    def work(conn: libvirt.virConnect) -> PowerState:
        domain = require_domain(conn, uuid)
        domain.revertToSnapshot(domain.snapshotLookupByName(name, 0), 0)
        return from_libvirt(domain.state()[0])

    return connection.run(host, work, timeout=max(600.0, settings.LIBVIRT_TIMEOUT))


def delete_snapshot(host: Host, uuid: uuid_module.UUID, name: str) -> None:
    def work(conn: libvirt.virConnect) -> None:
        domain = require_domain(conn, uuid)
        if name in domain.snapshotListNames(0):
            domain.snapshotLookupByName(name, 0).delete(0)

    connection.run(host, work, timeout=max(300.0, settings.LIBVIRT_TIMEOUT))


def drop_snapshots(host: Host, uuid: uuid_module.UUID) -> None:
    """Delete every snapshot of the domain (before its disk is replaced by a rebuild)."""

    def work(conn: libvirt.virConnect) -> None:
        domain = find_domain(conn, uuid)
        if domain is None:
            return
        for name in domain.snapshotListNames(0):
            snapshot = domain.snapshotLookupByName(name, 0)
            try:
                snapshot.delete(0)
            except libvirt.libvirtError:
                snapshot.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)

    connection.run(host, work, timeout=max(300.0, settings.LIBVIRT_TIMEOUT))


# Snapshots and backup checkpoints live in the disk that goes with the domain: their metadata too.
UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
)


class DomainRunning(HypervisorError):
    """The domain runs, and was to be removed only if it did not."""

    def __init__(self, message: str = "the server's virtual machine is running"):
        super().__init__(message, transient=False)


def _undefine(domain: libvirt.virDomain) -> None:
    """Undefine the domain with its metadata (UNDEFINE_FLAGS); nothing when it is gone meanwhile."""
    flags = UNDEFINE_FLAGS
    # Drivers that know no NVRAM or checkpoints (the simulated one) refuse those flags: left out then.
    optional = (libvirt.VIR_DOMAIN_UNDEFINE_NVRAM, libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
    for attempt in range(len(optional) + 1):
        try:
            domain.undefineFlags(flags)
            return
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return
            unsupported = (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG)
            if exc.get_error_code() not in unsupported or attempt == len(optional):
                raise
            flags &= ~optional[attempt]


def drop_volume(pool: libvirt.virStoragePool, name: str) -> None:
    """Delete the pool's volume of that name if it is there."""
    volume = _find_volume(pool, name)
    if volume is None:
        return
    try:
        volume.delete(0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:  # deleted meanwhile
            raise


def destroy(
    host: Host,
    request: DomainRequest,
    *,
    refuse_running: bool = False,
    extra_volumes: tuple[str, ...] = (),
    timeout: float | None = None,
) -> None:
    """Remove the domain, its network filters and its disk, seed and rescue volumes (and `extra_volumes`),
    whatever of them exists. A running domain is stopped first; with `refuse_running` it is left alone
    instead and DomainRunning raised, nothing removed. `timeout`: connection.run's."""

    def work(conn: libvirt.virConnect) -> None:
        domain = find_domain(conn, request.uuid)
        if domain is not None:
            if domain.isActive():
                if refuse_running:
                    raise DomainRunning()
                domain.destroy()
            _undefine(domain)
        if host.transport != "test":  # no filters on a simulated host
            network_filter.undefine(conn, request.uuid)
        try:
            pool = conn.storagePoolLookupByName(host.storage_pool)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
                return
            raise
        if not pool.isActive():
            pool.create(0)
        for name in (request.volume_name, request.seed_volume_name, *_rescue_volume_names(request)):
            drop_volume(pool, name)
        for name in extra_volumes:
            drop_volume(pool, name)

    connection.run(host, work, timeout=timeout)


# Rescue mode: the domain boots a rescue system from a throwaway overlay (its first disk), with the server's
# own disk as the second and a seed of its own (a one-time root password) as the third. Leaving it defines
# the server's own domain again.


def _rescue_volume_names(request: DomainRequest) -> tuple[str, str]:
    return (request.rescue_volume_name, request.rescue_seed_volume_name)


def _boots_rescue(xml: str, request: DomainRequest) -> bool:
    """Whether a domain definition has the rescue overlay among its disks."""
    return any(disk.source_file.rsplit("/", 1)[-1] == request.rescue_volume_name for disk in parse(xml).disks)


def defined_for_rescue(host: Host, request: DomainRequest) -> bool:
    """Whether the domain's persistent definition boots the rescue system (False without a domain)."""

    def work(conn: libvirt.virConnect) -> bool:
        domain = find_domain(conn, request.uuid)
        if domain is None:
            return False
        return _boots_rescue(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), request)

    return connection.run(host, work)


def disk_path(host: Host, request: DomainRequest) -> str:
    """The path of the server's own disk on its host; an error when it is missing."""

    def work(conn: libvirt.virConnect) -> str:
        pool = ensure_pool(conn, host.storage_pool, host.storage_pool_path)
        volume = _find_volume(pool, request.volume_name)
        if volume is None:
            raise HypervisorError("the server's disk is missing on its host")
        return volume.path()

    return connection.run(host, work)


def create_rescue_disk(host: Host, request: DomainRequest, base_path: str, capacity_bytes: int) -> str:
    """A fresh copy-on-write overlay of the rescue system's base volume (`base_path`; a blank disk without
    one) in place of any an earlier rescue left; return its path. The domain must not be running it."""

    def work(conn: libvirt.virConnect) -> str:
        pool = ensure_pool(conn, host.storage_pool, host.storage_pool_path)
        old = _find_volume(pool, request.rescue_volume_name)
        if old is not None:
            old.delete(0)
        spec = Volume(request.rescue_volume_name, capacity_bytes, backing_path=base_path)
        return _create_volume(pool, spec).path()

    return connection.run(host, work, timeout=max(120.0, settings.LIBVIRT_TIMEOUT))


def rescue_domain_xml(
    host: Host, request: DomainRequest, rescue_disk_path: str, disk_path: str, seed_path: str
) -> str:
    """The server's domain (name, UUID, sizes, interface, consoles) booting the rescue system: its overlay
    as the first disk (vda), the server's own disk as the second (vdb) and rescue mode's seed as the third
    (vdc); nothing else (no installer ISO). `request.kernel_boot` is the rescue system's."""
    domain = parse(domain_xml(host, dataclasses.replace(request, iso_path=""), rescue_disk_path))
    # Without a kernel of its own the rescue system boots from its disk only: were it not bootable, the
    # firmware must not go on to boot the server's own system with rescue mode's seed.
    first = 1 if request.kernel_boot is None else None
    domain.disks = [
        Disk(source_file=rescue_disk_path, in_snapshots=False, boot_order=first),
        Disk(source_file=disk_path, target_dev="vdb"),
        Disk(source_file=seed_path, target_dev="vdc", driver_type="raw", read_only=True, in_snapshots=False),
    ]
    return domain.to_xml()


def define_rescue(host: Host, request: DomainRequest, rescue_disk_path: str, seed_path: str) -> None:
    """Define the domain anew to boot the rescue system (`request.kernel_boot`: the rescue system's kernel,
    if it boots one) with the server's disk attached. It takes effect at the domain's next start."""

    def work(conn: libvirt.virConnect) -> None:
        pool = ensure_pool(conn, host.storage_pool, host.storage_pool_path)
        disk = _find_volume(pool, request.volume_name)
        if disk is None:
            raise HypervisorError("the server's disk is missing on its host")
        if not host.bridge:
            ensure_network(conn, host.network)
        _ensure_filters(conn, host, request)
        conn.defineXML(rescue_domain_xml(host, request, rescue_disk_path, disk.path(), seed_path))

    connection.run(host, work)


def stop_rescue(host: Host, request: DomainRequest) -> None:
    """Power the domain off if it runs the rescue system. A domain running the server's own system is left
    alone, so that leaving rescue mode a second time does not cut the power of the booted server."""

    def work(conn: libvirt.virConnect) -> None:
        domain = find_domain(conn, request.uuid)
        if domain is not None and domain.isActive() and _boots_rescue(domain.XMLDesc(0), request):
            domain.destroy()

    connection.run(host, work)


def delete_rescue_volumes(host: Host, request: DomainRequest) -> None:
    """Remove rescue mode's overlay and seed (the domain must not be running the rescue system)."""

    def work(conn: libvirt.virConnect) -> None:
        pool = ensure_pool(conn, host.storage_pool, host.storage_pool_path)
        for name in _rescue_volume_names(request):
            volume = _find_volume(pool, name)
            if volume is not None:
                volume.delete(0)

    connection.run(host, work)


class GuestAgentUnavailable(HypervisorError):
    """The QEMU guest agent in the guest did not answer (not installed, not started yet, stopped) or
    refused the request."""


AGENT_POLL = 2.0  # seconds between attempts while the guest agent is not connected (a guest still booting)


def set_user_password(host: Host, uuid: uuid_module.UUID, user: str, password: str, timeout: float) -> None:
    """Set a user's password in the running guest through the QEMU guest agent (virDomainSetUserPassword),
    waiting at most `timeout` seconds for the agent to connect and answer; GuestAgentUnavailable when it
    does not, or refuses. The password is neither logged nor kept."""
    deadline = time.monotonic() + timeout

    def work(conn: libvirt.virConnect) -> None:
        domain = _require_running(conn, uuid)
        if host.transport == "test":
            return  # the simulated host runs no guest
        try:
            while True:
                try:
                    domain.agentSetResponseTimeout(max(1, int(deadline - time.monotonic())), 0)
                    domain.setUserPassword(user, password, 0)
                    return
                except libvirt.libvirtError as exc:
                    if connection.link_broken(exc):
                        raise
                    not_connected = exc.get_error_code() == libvirt.VIR_ERR_AGENT_UNRESPONSIVE
                    if not_connected and time.monotonic() + AGENT_POLL < deadline and domain.isActive():
                        time.sleep(AGENT_POLL)
                        continue
                    message = exc.get_error_message() or "the guest agent refused"
                    raise GuestAgentUnavailable(message, code=exc.get_error_code()) from None
        finally:  # later agent calls get libvirt's default wait again
            with contextlib.suppress(libvirt.libvirtError):
                domain.agentSetResponseTimeout(libvirt.VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_DEFAULT, 0)

    connection.run(host, work, timeout=timeout + settings.LIBVIRT_TIMEOUT)


def power_state(host: Host, uuid: uuid_module.UUID) -> PowerState | None:
    """The domain's power state, or None when no such domain exists."""

    def work(conn: libvirt.virConnect) -> PowerState | None:
        domain = find_domain(conn, uuid)
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
    domain = require_domain(conn, uuid)
    if not domain.isActive():
        raise HypervisorError("the server is not running")
    return domain


def require_domain(conn: libvirt.virConnect, uuid: uuid_module.UUID | str) -> libvirt.virDomain:
    """The domain with this UUID; HypervisorError when there is none."""
    domain = find_domain(conn, uuid)
    if domain is None:
        raise HypervisorError("the virtual machine does not exist on its host")
    return domain
