"""Moving a server's domain from one host to another of its region: live migration of a running domain
(libvirt peer-to-peer, its local disk copied while it runs) and cold migration of a shut-off one (its disk
copied through libvirt streams), each reporting its progress, and the steps around them (preparing the
destination, finishing on the source, rolling the destination back).

The panel's handler calls these in order: `prepare_target`, then `live_migrate` or `cold_migrate`, then
`finish_source`; after a failure `rollback_target`. Each step can be run again (a retried or redelivered
task, a second worker): `locate` and `job_running` say where the domain is, and every step looks before it
acts. Nothing here touches the database; a host's own fields say how other hosts reach it
(`Host.migration_uri`, `Host.migration_address`).

Choices, and what libvirt 9.0 / QEMU 7.2 do (found on a real pair of daemons, tests/second_libvirtd.py; see
tests/hypervisor/test_a_running_server_migrates_live_between_two_real_hosts.py and its neighbours):

- Live: VIR_MIGRATE_LIVE | PEER2PEER | PERSIST_DEST | UNDEFINE_SOURCE | NON_SHARED_DISK | AUTO_CONVERGE |
  ABORT_ON_ERROR. The destination's definitions (the running one, and the persistent one, which may hold
  sizes waiting for the next start) are the source's with the disk, seed, ISO and kernel paths of the
  destination's pool and its network or bridge. Only the server's own disk (vda) is copied (NBD, a full
  copy of what the guest sees: the destination disk is a standalone qcow2, no longer an overlay of a base
  image); the seed is written on the destination beforehand (it never changes) and the ISO and kernel are
  the destination's own base volumes. The source's daemon connects to the destination's daemon
  (`migration_uri`, else `uri`); the memory and disk data go to `migration_address` (the destination's
  QEMU listens there, libvirt's ports 49152-49215).
- Cold: the disk is flattened on the source into a temporary standalone qcow2 (`<uuid>-migration.qcow2`,
  qemu-img convert through libvirt, reading the backing image), that file is copied to the destination
  (a sparse download stream from the source's daemon into a sparse upload stream to the destination's,
  through this process), and only then is the domain defined on the destination: its definition there is
  the mark of a complete copy. A retry finds it (and does nothing more), or finds no definition and copies
  again from the start, deleting whatever an interrupted copy left: a partial file is never taken as a
  disk. The destination needs no base image.
  The source's disk must not change between the copy and finish_source: the server does not run
  then (the panel's claim on it sees to that).
- Internal snapshots: libvirt refuses to live-migrate a domain that has any ("cannot migrate domain with N
  snapshots"), and a copy through qemu-img convert keeps only the disk's current state, so a server with
  snapshots cannot migrate: the panel refuses it (`has_snapshots`), and both migrations raise
  MigrationFailed ("delete its snapshots").
- Checkpoints (incremental backups): libvirt live-migrates a domain that has some, and QEMU carries their
  dirty bitmaps into the destination's disk, but libvirt not the checkpoints themselves: the destination
  would hold bitmaps no checkpoint names (which also keep internal snapshots from being reverted to). They
  are dropped first, with their bitmaps, while the domain runs: the next backup after a live migration is
  a full one. A cold copy carries no bitmaps, and the checkpoints' metadata goes with the source's
  definition (finish_source).
- A migration the destination refuses because it could not set up the network filter of the interface
  (FIREWALL_REFUSED) is tried again (see there).
- Simulated (test:///) hosts have neither migration nor volume streams: both migrations raise
  MigrationFailed there; `locate`, `prepare_target`, `finish_source` and `rollback_target` work on them.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import time
import uuid as uuid_module
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import libvirt
from django import db
from django.conf import settings
from lxml import etree

from . import connection, credentials, network_filter
from .connection import HypervisorError
from .domain_jobs import job_stats, running_job
from .driver import (
    DomainRequest,
    DomainRunning,
    destroy,
    drop_volume,
    ensure_network,
    ensure_pool,
    find_domain,
)
from .models import Host
from .power_state import PowerState, from_libvirt
from .xml.domain import parse, relocated
from .xml.storage import Volume

log = logging.getLogger(__name__)

MIGRATED_DISK = "vda"
POLL = 1.0  # seconds between two looks at a running migration job
ABORT_WAIT = 60.0  # seconds an aborted migration may take to end (libvirt rolls the destination back)
COPY_TIMEOUT = 6 * 3600.0  # seconds the flattening of a disk (qemu-img convert on the source) may take
STREAM_TIMEOUT = 300.0  # seconds one chunk of a stream may take
CHUNK = 4 << 20
# libvirt's error when the destination could not set up the interface's network filter. ebtables on
# nftables (Debian's) fails so now and then when another process changes the host's netfilter rules at the
# same moment (another domain's filter being set up); the migration is then tried again, at most
# FIREWALL_ATTEMPTS times in all (nothing of it is left on the destination, the domain runs on the source).
FIREWALL_REFUSED = "Failed to apply firewall rules"
FIREWALL_ATTEMPTS = 3

LIVE_FLAGS = (
    libvirt.VIR_MIGRATE_LIVE
    | libvirt.VIR_MIGRATE_PEER2PEER
    | libvirt.VIR_MIGRATE_PERSIST_DEST
    | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    | libvirt.VIR_MIGRATE_NON_SHARED_DISK
    | libvirt.VIR_MIGRATE_AUTO_CONVERGE
    | libvirt.VIR_MIGRATE_ABORT_ON_ERROR
)


class MigrationFailed(HypervisorError):
    """The migration did not happen; the domain is where it was (on the source)."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message, transient=False, code=code)


@dataclass(frozen=True)
class Progress:
    """How far a copy is, in bytes (memory and disk for a live migration, the disk file for a cold one)."""

    bytes_done: int
    bytes_total: int
    bytes_remaining: int

    @property
    def percent(self) -> int:
        """0-100 (0 while the total is not known yet)."""
        if self.bytes_total <= 0:
            return 0
        return max(0, min(100, self.bytes_done * 100 // self.bytes_total))

    @classmethod
    def of(cls, total: int, remaining: int) -> Progress:
        total, remaining = max(0, int(total)), max(0, int(remaining))
        return cls(bytes_done=max(0, total - remaining), bytes_total=total, bytes_remaining=remaining)


class Where(enum.Enum):
    """Where a server's domain is, for an idempotent retry after a crash."""

    SOURCE = "source"  # on the source (running or not), not on the target
    TARGET = "target"  # on the target, not on the source (or left defined but not running there by a
    # live switch-over whose source was not undefined yet): the switch-over happened; finish_source next
    BOTH = "both"  # on both: a live job in flight (the target's incoming domain), or a cold copy defined on
    # the target (complete) while the source still has its definition (finish_source next)
    NOWHERE = "nowhere"


@dataclass(frozen=True)
class _Seen:
    defined: bool
    active: bool
    migrating: bool = False
    running: bool = False  # running, not paused (an incoming migration's domain is paused on the target)


def _simulated(*hosts: Host) -> bool:
    return any(host.transport == "test" for host in hosts)


def _refuse_simulated(source: Host, target: Host) -> None:
    if _simulated(source, target):
        raise MigrationFailed(
            "simulated hosts cannot migrate servers (libvirt's test driver has no migration)"
        )


def _migrating_out(domain: libvirt.virDomain) -> dict | None:
    """The running outgoing migration job's statistics, or None."""
    return running_job(domain, libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT)


def _seen(host: Host, uuid, look_for_job: bool = False) -> _Seen:
    def work(conn: libvirt.virConnect) -> _Seen:
        domain = find_domain(conn, uuid)
        if domain is None:
            return _Seen(defined=False, active=False)
        active = bool(domain.isActive())
        migrating = look_for_job and host.transport != "test" and _migrating_out(domain) is not None
        running = active and domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        return _Seen(defined=True, active=active, migrating=migrating, running=running)

    return connection.run(host, work)


def _where(here: _Seen, there: _Seen) -> Where:
    if not there.defined:
        return Where.SOURCE if here.defined else Where.NOWHERE
    if not here.defined:
        return Where.TARGET
    if there.active and not here.active and not here.migrating:
        return Where.TARGET
    return Where.BOTH


def locate(source: Host, target: Host, uuid: uuid_module.UUID | str) -> Where:
    """Where the server's domain is (see Where). A domain running on the target while the source has it
    defined but not running, with no migration job, is a live switch-over whose source was not undefined:
    TARGET."""
    return _where(_seen(source, uuid, look_for_job=True), _seen(target, uuid))


def _answer(host: Host | None, uuid, look_for_job: bool = False) -> _Seen | None:
    if host is None:
        return None
    try:
        return _seen(host, uuid, look_for_job=look_for_job)
    except HypervisorError as exc:
        log.warning("locating %s: %s does not answer: %s", uuid, host.name, exc.message)
        return None


def locate_answering(source: Host | None, target: Host | None, uuid: uuid_module.UUID | str) -> Where | None:
    """Where the server's domain is, from the hosts that answer (None for a host not to be asked: it is
    known to be down); None when that cannot be told. With both answering, as `locate`. With the source
    silent: TARGET when the target runs it (running, not paused as an incoming migration's domain is),
    SOURCE when the target does not have it, else None. With the target silent: SOURCE when the source runs
    it with no migration job (a switch-over stops it there), else None (it may run on the target)."""
    here = _answer(source, uuid, look_for_job=True)
    there = _answer(target, uuid)
    if here is not None and there is not None:
        return _where(here, there)
    if there is not None:
        if there.running:
            return Where.TARGET
        return None if there.defined else Where.SOURCE
    if here is not None and here.active and not here.migrating:
        return Where.SOURCE
    return None


def on_both(source: Host, target: Host, uuid: uuid_module.UUID | str) -> bool:
    """Whether the move is unsettled: a migration job runs on the source, or the domain is active on both
    hosts (an incoming live migration's domain on the target). The target must then not be rolled back,
    nor its claim given back. Simulated hosts run no migration jobs."""
    here = _seen(source, uuid, look_for_job=True)
    if here.migrating:
        return True
    return here.active and _seen(target, uuid).active


def job_running(source: Host, uuid: uuid_module.UUID | str) -> bool:
    """Whether a migration job of this domain is in flight on the source."""
    if source.transport == "test":
        return False
    return _seen(source, uuid, look_for_job=True).migrating


def has_snapshots(host: Host, uuid: uuid_module.UUID | str) -> bool:
    """Whether the domain has internal snapshots (False without a domain). Such a server cannot migrate:
    the panel asks for its snapshots to be deleted first."""

    def work(conn: libvirt.virConnect) -> bool:
        domain = find_domain(conn, uuid)
        return domain is not None and domain.snapshotNum(0) > 0

    return connection.run(host, work)


# -- Volumes


def _volume(pool: libvirt.virStoragePool, name: str, refresh: bool = False) -> libvirt.virStorageVol | None:
    """The volume of that name, or None; with `refresh`, the pool is refreshed once when libvirt does not
    list it (a file written by a stream is listed only after a refresh)."""
    for attempt in range(2 if refresh else 1):
        try:
            return pool.storageVolLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                raise
        if attempt == 0 and refresh:
            connection.when_pool_idle(lambda: pool.refresh(0))
    return None


def _pool(conn: libvirt.virConnect, host: Host) -> libvirt.virStoragePool:
    return ensure_pool(conn, host.storage_pool, host.storage_pool_path)


def copy_volume_name(request: DomainRequest) -> str:
    """The temporary standalone copy a cold migration makes of the disk on the source."""
    return f"{request.uuid}-migration.qcow2"


def _format(volume: libvirt.virStorageVol) -> str:
    element = etree.fromstring(volume.XMLDesc(0).encode()).find("target/format")
    return element.get("type", "") if element is not None else ""


def _file_size(volume: libvirt.virStorageVol, host: Host) -> int:
    """The size of the volume's file (what a download stream yields)."""
    if host.transport == "test":
        return volume.info()[2]
    return volume.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2]


# -- Definitions


def _source_disk(conn: libvirt.virConnect, request: DomainRequest) -> tuple[libvirt.virDomain, str]:
    """The source's domain and the path of the server's disk in its definition."""
    domain = find_domain(conn, request.uuid)
    if domain is None:
        raise MigrationFailed("the server's virtual machine is not on its host")
    for disk in parse(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).disks:
        if disk.source_file.rsplit("/", 1)[-1] == request.volume_name:
            return domain, disk.source_file
    raise MigrationFailed("the server's disk is not in its virtual machine's definition")


def _path_map(xml: str, request: DomainRequest, disk_path: str, seed_path: str) -> dict[str, str]:
    """Each file disk of the source's definition -> its counterpart on the target."""
    paths = {}
    for disk in parse(xml).disks:
        if not disk.source_file:
            continue
        name = disk.source_file.rsplit("/", 1)[-1]
        if name == request.volume_name:
            paths[disk.source_file] = disk_path
        elif name == request.seed_volume_name:
            paths[disk.source_file] = seed_path
        elif name in (request.rescue_volume_name, request.rescue_seed_volume_name):
            raise MigrationFailed("the server is in rescue mode: leave rescue mode before migrating it")
        elif disk.device == "cdrom":
            if not request.iso_path:
                raise MigrationFailed("the server has an ISO attached, but none was named on the target")
            paths[disk.source_file] = request.iso_path
        else:
            raise MigrationFailed(f"the server's virtual machine has a disk the panel does not know: {name}")
    return paths


def _target_xml(xml: str, target: Host, request: DomainRequest, paths: dict[str, str], cold: bool) -> str:
    try:
        return relocated(
            xml,
            paths,
            network=target.network,
            bridge=target.bridge,
            kernel_boot=request.kernel_boot,
            domain_type=(target.domain_type or "") if cold else "",
        )
    except ValueError as exc:
        raise MigrationFailed(str(exc)) from None


def _target_volumes(target: Host, request: DomainRequest) -> tuple[str, str]:
    """The paths of the server's disk and seed on the target (prepare_target made them)."""

    def work(conn: libvirt.virConnect) -> tuple[str, str]:
        pool = _pool(conn, target)
        disk = _volume(pool, request.volume_name, refresh=True)
        seed = _volume(pool, request.seed_volume_name, refresh=True)
        if seed is None:
            raise MigrationFailed("the server's seed is missing on the target (prepare_target first)")
        return (disk.path() if disk is not None else ""), seed.path()

    return connection.run(target, work)


# -- Preparing the target


def _copy_filters(source: Host, target: Host, uuid) -> None:
    """Define on the target the server's filters as the source has them (a request without a filter spec:
    the domain references what its host has)."""

    def read(conn: libvirt.virConnect) -> list[str]:
        found = []
        for name in reversed(network_filter.filter_names(uuid)):  # referenced ones first
            with contextlib.suppress(libvirt.libvirtError):
                found.append(conn.nwfilterLookupByName(name).XMLDesc(0))
        return found

    definitions = connection.run(source, read)
    if definitions:
        connection.run(target, lambda conn: [conn.nwfilterDefineXML(xml) for xml in definitions])


def _disk_capacity(source: Host, request: DomainRequest) -> tuple[bool, int]:
    """(whether the domain runs on the source, the virtual size of its disk there)."""

    def work(conn: libvirt.virConnect) -> tuple[bool, int]:
        domain, path = _source_disk(conn, request)
        return bool(domain.isActive()), conn.storageVolLookupByPath(path).info()[1]

    return connection.run(source, work)


def _ensure_target_disk(target: Host, request: DomainRequest, capacity: int) -> str:
    """The empty qcow2 a live migration's disk copy writes into, of the source disk's size (one left by an
    earlier attempt of that size is taken)."""

    def work(conn: libvirt.virConnect) -> str:
        pool = _pool(conn, target)
        existing = _volume(pool, request.volume_name, refresh=True)
        if existing is not None:
            if target.transport == "test" or (
                existing.info()[1] == capacity and _format(existing) == "qcow2"
            ):
                return existing.path()
            existing.delete(0)
        return pool.createXML(Volume(request.volume_name, capacity).to_xml(), 0).path()

    return connection.run(target, work, timeout=max(120.0, settings.LIBVIRT_TIMEOUT))


def prepare_target(source: Host, target: Host, request: DomainRequest, seed: bytes) -> None:
    """Make the target ready to take the server: its storage pool, its network (unless it uses a bridge),
    the server's network filters (as `request.network_filter` says; without one, copied from the source),
    the server's seed written anew, the base volumes the request names (kernel, ISO) checked, and, when the
    domain runs on the source (a live migration), the empty disk the copy writes into. `request` is the
    request for the target (its paths are the target's base volumes). Idempotent; does nothing once the
    domain is defined on the target (the migration went further already)."""
    if _seen(target, request.uuid).defined:
        return
    running, capacity = _disk_capacity(source, request)

    def work(conn: libvirt.virConnect) -> None:
        _pool(conn, target)
        if not target.bridge:
            ensure_network(conn, target.network)
        if target.transport == "test":
            return
        if request.network_filter is not None:
            network_filter.define(conn, request.network_filter)
        for path in _base_paths(request):
            try:
                conn.storageVolLookupByPath(path)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                    raise
                raise MigrationFailed(f"the target host has no volume {path}") from None

    connection.run(target, work)
    if request.network_filter is None and target.transport != "test" and source.transport != "test":
        _copy_filters(source, target, request.uuid)
    _write_seed(target, request, seed)
    if running:
        _ensure_target_disk(target, request, capacity)


def _base_paths(request: DomainRequest) -> list[str]:
    paths = [request.iso_path] if request.iso_path else []
    if request.kernel_boot is not None:
        paths += [request.kernel_boot.kernel, request.kernel_boot.initrd]
    return paths


def _write_seed(target: Host, request: DomainRequest, seed: bytes) -> None:
    """The seed volume written anew (a copy an interrupted attempt left may be incomplete)."""

    def work(conn: libvirt.virConnect) -> None:
        pool = _pool(conn, target)
        drop_volume(pool, request.seed_volume_name)
        volume = pool.createXML(Volume(request.seed_volume_name, len(seed), format="raw").to_xml(), 0)
        if target.transport == "test":
            return
        stream = conn.newStream(0)
        volume.upload(stream, 0, len(seed), 0)
        try:
            stream.sendAll(lambda _stream, nbytes, view: view.pop(nbytes), _Chunks(seed))
            stream.finish()
        except BaseException:
            with contextlib.suppress(libvirt.libvirtError):
                stream.abort()
            with contextlib.suppress(libvirt.libvirtError):
                volume.delete(0)
            raise

    connection.run(target, work)


class _Chunks:
    def __init__(self, data: bytes):
        self.data = memoryview(data)

    def pop(self, nbytes: int) -> bytes:
        chunk, self.data = self.data[:nbytes], self.data[nbytes:]
        return bytes(chunk)


# -- Live migration


def _destination(target: Host) -> str:
    return target.migration_uri or target.uri


def _listen_address(migration_address: str) -> str:
    """The host part of a migration address (tcp://10.0.0.2 -> 10.0.0.2), where the target's QEMU listens."""
    try:
        return urlsplit(migration_address).hostname or ""
    except ValueError:
        return ""


def _drop_checkpoints(domain: libvirt.virDomain) -> None:
    """Delete the running domain's checkpoints, newest first, with their bitmaps (see the module)."""
    checkpoints = domain.listAllCheckpoints(libvirt.VIR_DOMAIN_CHECKPOINT_LIST_TOPOLOGICAL)
    for checkpoint in reversed(checkpoints):
        try:
            checkpoint.delete(0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN_CHECKPOINT:
                raise


def _stats_progress(stats: dict) -> Progress | None:
    total = stats.get("data_total")
    if total is None:
        return None
    return Progress.of(total, stats.get("data_remaining", 0))


class _Migration(threading.Thread):
    """The blocking migrateToURI3 call, in a thread of its own (its libvirt call runs under connection.run
    in the host's pool), while the caller follows the job."""

    def __init__(self, source: Host, work: Callable[[libvirt.virConnect], None], timeout: float):
        super().__init__(name="libvirt-migration", daemon=True)
        self.source, self.work, self.timeout = source, work, timeout
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            connection.run(self.source, self.work, timeout=self.timeout)
        except BaseException as exc:  # handed to the caller
            self.error = exc
        finally:
            db.connections.close_all()  # this thread's, if opening the connection read the database


def abort(source: Host, uuid: uuid_module.UUID | str) -> None:
    """Abort the domain's outgoing migration job on the source, if one runs (libvirt then rolls the
    destination back; the domain runs on the source). Idempotent."""

    def work(conn: libvirt.virConnect) -> None:
        domain = find_domain(conn, uuid)
        if domain is not None and _migrating_out(domain) is not None:
            try:
                domain.abortJob()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:  # it ended meanwhile
                    raise

    connection.run(source, work)


def _poll(source: Host, uuid) -> Progress | None:
    def work(conn: libvirt.virConnect) -> Progress | None:
        domain = find_domain(conn, uuid)
        stats = None if domain is None else _migrating_out(domain)
        return None if stats is None else _stats_progress(stats)

    return connection.run(source, work)


def _completed(target: Host, uuid) -> Progress | None:
    """What the finished migration moved, from the target's record of the completed job."""

    def work(conn: libvirt.virConnect) -> Progress | None:
        domain = find_domain(conn, uuid)
        if domain is None:
            return None
        stats = job_stats(domain, libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        total = stats.get("data_total") or stats.get("data_processed")
        return None if not total else Progress(int(total), int(total), 0)

    with contextlib.suppress(HypervisorError):
        return connection.run(target, work)
    return None


def _follow(source: Host, uuid, deadline: float | None, on_progress: Callable[[Progress], None]) -> Progress:
    """Follow a migration job already running on the source (a retry while it goes on) until it ends."""
    last = Progress(0, 0, 0)
    while True:
        current = _poll(source, uuid)
        if current is None:
            return last
        last = current
        on_progress(current)
        if deadline is not None and time.monotonic() > deadline:
            abort(source, uuid)
            raise MigrationFailed("the migration did not finish in time and was aborted")
        time.sleep(POLL)


def live_migrate(
    source: Host,
    target: Host,
    request: DomainRequest,
    *,
    max_bandwidth_mib: int,
    timeout: float,
    on_progress: Callable[[Progress], None],
) -> None:
    """Move the running domain to the target while it runs (see the module for the flags and what is
    copied), capped at `max_bandwidth_mib` MiB/s (0: no cap), following the job every second with
    `on_progress`, aborting it after `timeout` seconds. On success the domain runs on the target, defined
    there, and is undefined on the source (its volumes stay for finish_source). MigrationFailed when libvirt
    refuses or the migration fails or is aborted: the domain then still runs on the source. A link to a
    host that breaks is raised as the transient HypervisorError it is (the job may go on: a retry follows
    it). Returns at once when the domain is on the target already (a retry after the switch-over); a
    retry while the job is still in flight follows that job."""
    _refuse_simulated(source, target)
    deadline = time.monotonic() + timeout
    where = locate(source, target, request.uuid)
    if where is Where.TARGET:
        return
    if where is Where.NOWHERE:
        raise MigrationFailed("the server's virtual machine is on neither host")
    if job_running(source, request.uuid):
        last = _follow(source, request.uuid, deadline, on_progress)
        if locate(source, target, request.uuid) is Where.TARGET:
            on_progress(_completed(target, request.uuid) or Progress(last.bytes_total, last.bytes_total, 0))
            return
        # the earlier job failed: go on with a new one
    if has_snapshots(source, request.uuid):
        raise MigrationFailed("the server has snapshots: delete its snapshots before migrating it")

    running, capacity = _disk_capacity(source, request)
    if not running:
        raise MigrationFailed("the server is not running: a live migration needs a running server")
    disk_path = _ensure_target_disk(target, request, capacity)
    _, seed_path = _target_volumes(target, request)

    def describe_source(conn: libvirt.virConnect) -> tuple[str, str]:
        domain = find_domain(conn, request.uuid)
        if domain is None or not domain.isActive():
            raise MigrationFailed("the server stopped before its live migration began")
        flags = libvirt.VIR_DOMAIN_XML_SECURE | libvirt.VIR_DOMAIN_XML_MIGRATABLE
        return domain.XMLDesc(flags), domain.XMLDesc(flags | libvirt.VIR_DOMAIN_XML_INACTIVE)

    live_xml, persistent_xml = connection.run(source, describe_source)
    params: dict = {
        libvirt.VIR_MIGRATE_PARAM_DEST_XML: _target_xml(
            live_xml, target, request, _path_map(live_xml, request, disk_path, seed_path), cold=False
        ),
        libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: _target_xml(
            persistent_xml,
            target,
            request,
            _path_map(persistent_xml, request, disk_path, seed_path),
            cold=False,
        ),
        libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: [MIGRATED_DISK],
    }
    if max_bandwidth_mib > 0:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = int(max_bandwidth_mib)
    if target.migration_address:
        params[libvirt.VIR_MIGRATE_PARAM_URI] = target.migration_address
        listen = _listen_address(target.migration_address)
        if listen:
            params[libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS] = listen
    destination = _destination(target)

    def drop_checkpoints(conn: libvirt.virConnect) -> None:
        domain = find_domain(conn, request.uuid)
        if domain is not None and domain.isActive():
            _drop_checkpoints(domain)

    connection.run(source, drop_checkpoints, timeout=max(120.0, settings.LIBVIRT_TIMEOUT))
    # The migration call holds its connection for as long as it runs, and libvirt's client then answers
    # other calls on that connection only seconds late: it gets a connection of its own, so that the job
    # is followed and aborted on time through the cached one.
    own_uri = credentials.connect_uri(source)

    def migrate(_conn: libvirt.virConnect) -> None:
        own = libvirt.open(own_uri)
        try:
            with contextlib.suppress(libvirt.libvirtError):
                own.setKeepAlive(5, 3)
            domain = find_domain(own, request.uuid)
            if domain is None:
                raise MigrationFailed("the server's virtual machine disappeared from its host")
            try:
                domain.migrateToURI3(destination, params, LIVE_FLAGS)
            except libvirt.libvirtError as exc:
                alive = False
                with contextlib.suppress(libvirt.libvirtError):
                    alive = bool(own.isAlive())
                if not alive:
                    raise  # the link to the source broke: the job may go on there
                # libvirt's own words: a link broken between the two daemons is a failed migration
                message = exc.get_error_message() or str(exc)
                raise MigrationFailed(message, code=exc.get_error_code()) from None
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                own.close()

    attempts = 0
    while True:
        attempts += 1
        error, aborted, last = _run(source, request, migrate, timeout, deadline, on_progress)
        if error is None:
            break
        if isinstance(error, HypervisorError) and error.transient:
            raise error  # the link to the source broke: the job may go on there (a retry follows it)
        if aborted:
            raise MigrationFailed(
                f"the migration did not finish within {timeout:g} seconds and was aborted"
            ) from error
        message = error.message if isinstance(error, HypervisorError) else str(error)
        if (
            FIREWALL_REFUSED in message
            and attempts < FIREWALL_ATTEMPTS
            and time.monotonic() + POLL < deadline
            and locate(source, target, request.uuid) is Where.SOURCE
        ):
            log.warning("migration of %s: %s; trying again", request.uuid, message)
            time.sleep(POLL)
            continue
        if isinstance(error, MigrationFailed):
            raise error
        raise MigrationFailed(message, code=getattr(error, "code", None)) from error
    on_progress(_completed(target, request.uuid) or Progress(last.bytes_total, last.bytes_total, 0))


def _run(
    source: Host,
    request: DomainRequest,
    migrate: Callable[[libvirt.virConnect], None],
    timeout: float,
    deadline: float,
    on_progress: Callable[[Progress], None],
) -> tuple[BaseException | None, bool, Progress]:
    """Run the migration call in a thread, following its job about every second and aborting it past the
    deadline; returns (its error or None, whether it was aborted, the last progress reported)."""
    job = _Migration(source, migrate, timeout=max(timeout, 0) + ABORT_WAIT + settings.LIBVIRT_TIMEOUT)
    job.start()
    last = Progress(0, 0, 0)
    aborted = False
    while job.is_alive():
        job.join(POLL)
        if not job.is_alive():
            break
        with contextlib.suppress(HypervisorError):
            current = None if aborted else _poll(source, request.uuid)
            # libvirt reports no amounts while the job starts (and again while it is cancelled)
            if current is not None and (current.bytes_total or not last.bytes_total):
                last = current
                on_progress(current)
        if not aborted and time.monotonic() > deadline:
            log.warning("migration of %s did not finish in time: aborting it", request.uuid)
            aborted = True
            with contextlib.suppress(HypervisorError):
                abort(source, request.uuid)
    return job.error, aborted, last


# -- Cold migration


def _flatten(source: Host, request: DomainRequest) -> int:
    """The source's disk as a standalone qcow2 (`copy_volume_name`), made anew; returns its file size.
    MigrationFailed when the domain runs or has snapshots."""

    def work(conn: libvirt.virConnect) -> int:
        domain, path = _source_disk(conn, request)
        if domain.isActive():
            raise MigrationFailed("the server is running: a cold migration needs it shut off")
        if domain.snapshotNum(0) > 0:
            raise MigrationFailed("the server has snapshots: delete its snapshots before migrating it")
        disk = conn.storageVolLookupByPath(path)
        pool = _pool(conn, source)
        name = copy_volume_name(request)
        drop_volume(pool, name)
        # qemu-img convert on the host: reads the disk through its backing chain, writes a standalone qcow2
        copy = pool.createXMLFrom(Volume(name, disk.info()[1]).to_xml(), disk, 0)
        return _file_size(copy, source)

    return connection.run(source, work, timeout=COPY_TIMEOUT)


def _drop_copy(source: Host, request: DomainRequest) -> None:
    connection.run(source, lambda conn: drop_volume(_pool(conn, source), copy_volume_name(request)))


def run_again(host: Host, uuid: uuid_module.UUID | str) -> PowerState:
    """After a failed migration: the domain on the host (the source) runs again: resumed when paused (a
    live migration's last phase pauses it; a start would do nothing then), started when shut off. Returns
    its power state."""

    def work(conn: libvirt.virConnect) -> PowerState:
        domain = find_domain(conn, uuid)
        if domain is None:
            raise MigrationFailed("the server's virtual machine is not on its host")
        state = domain.state()[0]
        try:
            if state == libvirt.VIR_DOMAIN_PAUSED:
                domain.resume()
            elif not domain.isActive():
                domain.create()
        except libvirt.libvirtError:
            if domain.state()[0] != libvirt.VIR_DOMAIN_RUNNING:  # else it runs already
                raise
        return from_libvirt(domain.state()[0])

    return connection.run(host, work, timeout=max(60.0, settings.LIBVIRT_TIMEOUT))


def drop_source_copy(source: Host, request: DomainRequest) -> None:
    """Remove the temporary copy a cold migration makes of the disk on the source (cold_migrate removes it
    itself; this is for a migration given up after its worker was lost mid-copy). finish_source removes it
    too. Idempotent."""
    _drop_copy(source, request)


def _stream_copy(
    source: Host, target: Host, request: DomainRequest, size: int, on_progress: Callable[[Progress], None]
) -> None:
    """Copy the source's flattened disk into the target's disk volume (replaced), through a sparse download
    stream on the source and a sparse upload stream on the target, calling on_progress about every second.
    On failure the target's volume is removed."""
    name = copy_volume_name(request)

    def open_download(conn: libvirt.virConnect) -> libvirt.virStream:
        volume = _volume(_pool(conn, source), name, refresh=True)
        if volume is None:
            raise MigrationFailed("the copy of the server's disk vanished from the source")
        stream = conn.newStream(0)
        volume.download(stream, 0, 0, libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM)
        return stream

    def open_upload(conn: libvirt.virConnect) -> tuple[libvirt.virStorageVol, libvirt.virStream]:
        pool = _pool(conn, target)
        drop_volume(pool, request.volume_name)
        # A raw volume of no length filled with the qcow2 file's bytes; a refresh then reads it as qcow2.
        volume = pool.createXML(Volume(request.volume_name, 0, format="raw").to_xml(), 0)
        stream = conn.newStream(0)
        volume.upload(stream, 0, 0, libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM)
        return volume, stream

    download = connection.run(source, open_download)
    volume, upload = None, None
    done = False
    try:
        volume, upload = connection.run(target, open_upload)
        copied = 0
        reported = time.monotonic()
        on_progress(Progress.of(size, size))
        while True:
            data = connection.run(
                source,
                lambda _conn: download.recvFlags(CHUNK, libvirt.VIR_STREAM_RECV_STOP_AT_HOLE),
                timeout=STREAM_TIMEOUT,
            )
            if data == -3:  # a hole: its length is sent on as a hole
                length = connection.run(source, lambda _conn: download.recvHole(0))
                connection.run(target, lambda _conn, length=length: upload.sendHole(length, 0))
                copied += length
            elif isinstance(data, int):
                raise MigrationFailed("reading the server's disk on the source failed")
            elif not data:
                break
            else:
                _send(target, upload, data)
                copied += len(data)
            if time.monotonic() - reported >= POLL:
                reported = time.monotonic()
                on_progress(Progress.of(size, max(0, size - copied)))
        connection.run(source, lambda _conn: download.finish(), timeout=STREAM_TIMEOUT)
        connection.run(target, lambda _conn: upload.finish(), timeout=STREAM_TIMEOUT)
        done = True
        if copied != size:
            raise MigrationFailed(f"the copy of the server's disk has {copied} bytes, not {size}")
    finally:
        if not done:
            with contextlib.suppress(HypervisorError, libvirt.libvirtError):
                connection.run(source, lambda _conn: download.abort())
            if upload is not None:
                with contextlib.suppress(HypervisorError, libvirt.libvirtError):
                    connection.run(target, lambda _conn: upload.abort())
        if not done and volume is not None:
            with contextlib.suppress(HypervisorError, libvirt.libvirtError):
                connection.run(target, lambda _conn: volume.delete(0))


def _send(target: Host, stream: libvirt.virStream, data: bytes) -> None:
    view = memoryview(data)
    while view:
        sent = connection.run(target, lambda _conn, view=view: stream.send(bytes(view)), STREAM_TIMEOUT)
        if sent < 0:
            raise MigrationFailed("writing the server's disk on the target failed")
        view = view[sent:]


def _check_copy(target: Host, request: DomainRequest, size: int, capacity: int) -> str:
    """The target's disk as libvirt reads it after the copy: a qcow2 file of the copied size, of at least
    the disk's size; returns its path."""

    def work(conn: libvirt.virConnect) -> str:
        pool = _pool(conn, target)
        connection.when_pool_idle(lambda: pool.refresh(0))
        volume = _volume(pool, request.volume_name)
        if volume is None or _format(volume) != "qcow2" or _file_size(volume, target) != size:
            raise MigrationFailed("the copy of the server's disk on the target is not complete")
        if volume.info()[1] < capacity:
            raise MigrationFailed("the copy of the server's disk on the target is smaller than the disk")
        return volume.path()

    return connection.run(target, work)


def cold_migrate(
    source: Host, target: Host, request: DomainRequest, *, on_progress: Callable[[Progress], None]
) -> None:
    """Move the shut-off domain to the target: its disk copied (flattened, see the module) into the target's
    pool, then the domain defined there (not started) with the target's paths, network and filters. The
    source keeps its domain and disk until finish_source. MigrationFailed when the domain runs, has
    snapshots or the copy fails (what the copy left on the target is removed). Idempotent: a retry finds the
    domain defined on the target (done), or copies again from the start."""
    _refuse_simulated(source, target)
    where = locate(source, target, request.uuid)
    if where is Where.NOWHERE:
        raise MigrationFailed("the server's virtual machine is on neither host")
    if where is Where.TARGET:
        return
    if where is Where.BOTH:
        if _seen(target, request.uuid).active:
            raise MigrationFailed("the server's virtual machine is running on the target")
        return  # defined on the target: the copy was complete (a retry)

    def describe(conn: libvirt.virConnect) -> tuple[str, int]:
        domain, path = _source_disk(conn, request)
        xml = domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
        return xml, conn.storageVolLookupByPath(path).info()[1]

    xml, capacity = connection.run(source, describe)
    try:
        size = _flatten(source, request)
        _stream_copy(source, target, request, size, on_progress)
    finally:
        with contextlib.suppress(HypervisorError):
            _drop_copy(source, request)
    disk_path = _check_copy(target, request, size, capacity)
    _, seed_path = _target_volumes(target, request)
    definition = _target_xml(xml, target, request, _path_map(xml, request, disk_path, seed_path), cold=True)

    def define(conn: libvirt.virConnect) -> None:
        if find_domain(conn, request.uuid) is None:
            conn.defineXML(definition)

    connection.run(target, define)
    on_progress(Progress(size, size, 0))


# -- After the switch-over, or after a failure


def _clear(host: Host, request: DomainRequest, where: str) -> None:
    """Undefine the server's domain on the host (never while it runs there), then remove its filters and
    volumes there (a cold migration's copy too)."""
    try:
        destroy(
            host,
            request,
            refuse_running=True,
            extra_volumes=(copy_volume_name(request),),
            timeout=max(120.0, settings.LIBVIRT_TIMEOUT),
        )
    except DomainRunning as exc:
        raise MigrationFailed(f"the server's virtual machine is running on the {where} host") from exc


def finish_source(source: Host, request: DomainRequest) -> None:
    """After the switch-over: undefine the domain on the source if it is still defined there, and remove its
    disk, seed, rescue volumes, a cold migration's copy and its network filters there. Never touches the
    target. Refuses (MigrationFailed) while the domain runs on the source. Idempotent."""
    _clear(source, request, "source")


def rollback_target(target: Host, request: DomainRequest) -> None:
    """After a failed migration: remove from the target what prepare_target, a cold copy or a migration
    left there: the domain's definition (never a domain running there: MigrationFailed), its volumes and its
    network filters. Idempotent. Call it only while the source still has the domain (locate says SOURCE or
    BOTH with the source running it): on the target it cannot tell a leftover from the server's only copy."""
    _clear(target, request, "target")


__all__ = [
    "MigrationFailed",
    "Progress",
    "Where",
    "abort",
    "cold_migrate",
    "copy_volume_name",
    "drop_source_copy",
    "finish_source",
    "has_snapshots",
    "job_running",
    "live_migrate",
    "locate",
    "locate_answering",
    "on_both",
    "prepare_target",
    "rollback_target",
    "run_again",
]
