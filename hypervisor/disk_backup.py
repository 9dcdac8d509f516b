"""Backups of a server's disk on its host, and writing a restored disk back: libvirt's push-mode backup job
(with checkpoints for incremental copies), an offline copy of a shut-off domain's disk, and reading and
writing volumes through libvirt streams (no shared filesystem).

Only the server's own disk (vda) is backed up; the cloud-init seed and any CD-ROM are not. Every libvirt
call runs through connection.run under a timeout; each step can be run again (a redelivered task).

What holds on libvirt 9.0 / QEMU 7.2 (found on the real host, see the tests):
- push mode creates the target file itself and refuses one that exists ("store ... exists"), so a leftover
  scratch file is deleted first; libvirt removes the target file when the job is aborted or fails;
- an incremental target is a qcow2 holding only the changed clusters, its header naming the domain's disk
  as backing file (backup_images.assemble rebases it onto the previous image);
- the checkpoint is created at backupBegin and stays when the job later fails or is aborted;
- the job's outcome is in jobStats(VIR_DOMAIN_JOB_STATS_COMPLETED): `success` True/False and `errmsg`;
- checkpoints cannot be deleted while the domain is shut off (only their metadata), and dirty bitmaps
  block reverting to an internal snapshot (see drop_checkpoints).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid as uuid_module
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt
from django.conf import settings
from lxml import etree

from . import connection
from .connection import HypervisorError
from .domain_jobs import job_stats, running_job
from .driver import ensure_pool, find_domain, require_domain
from .models import Host
from .xml.backup import DomainCheckpoint, vda_only
from .xml.domain import parse
from .xml.storage import Volume, pool_target_path

log = logging.getLogger(__name__)

BACKUP_DISK = "vda"
COPY_TIMEOUT = 6 * 3600.0  # seconds an offline copy of a disk (qemu-img convert on the host) may take
ABORT_WAIT = 30.0  # seconds to wait for an aborted job to end
STREAM_TIMEOUT = 300.0  # seconds one chunk of a volume stream may take


@dataclass
class BackupStart:
    """How a backup began: `incremental` (only changes since the given checkpoint), `frozen` (the guest's
    filesystems were frozen through the guest agent while the job started: consistent, not only
    crash-consistent), `offline` (a shut-off domain's disk copied, no job to wait for, no checkpoint)."""

    incremental: bool
    frozen: bool
    offline: bool


def _pool(conn: libvirt.virConnect, host: Host) -> libvirt.virStoragePool:
    return ensure_pool(conn, host.storage_pool, host.storage_pool_path)


def _lookup(pool: libvirt.virStoragePool, name: str) -> libvirt.virStorageVol | None:
    """The volume of that name, refreshing the pool once when libvirt does not list it (a file libvirt's
    backup job or another process wrote into the pool's directory)."""
    for attempt in range(2):
        try:
            return pool.storageVolLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                raise
        if attempt == 0:
            connection.when_pool_idle(lambda: pool.refresh(0))
    return None


def _delete_volume(pool: libvirt.virStoragePool, name: str) -> None:
    volume = _lookup(pool, name)
    if volume is not None:
        try:
            volume.delete(0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                raise


def _check_name(name: str) -> None:
    if not name or "/" in name or name.startswith((".", "-")):
        raise HypervisorError(f"not a volume name: {name!r}")


def _backup_running(domain: libvirt.virDomain) -> dict | None:
    """The running backup job's statistics, or None."""
    return running_job(domain, libvirt.VIR_DOMAIN_JOB_OPERATION_BACKUP)


def _abort_running(domain: libvirt.virDomain, wait: float = ABORT_WAIT) -> None:
    if _backup_running(domain) is None:
        return
    try:
        domain.abortJob()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:  # ended meanwhile
            raise
    deadline = time.monotonic() + wait
    while _backup_running(domain) is not None:
        if time.monotonic() > deadline:
            raise HypervisorError("the backup job did not end after it was aborted", transient=True)
        time.sleep(0.2)


def _checkpoint_names(domain: libvirt.virDomain) -> list[str]:
    """Oldest first."""
    return [
        checkpoint.getName()
        for checkpoint in domain.listAllCheckpoints(libvirt.VIR_DOMAIN_CHECKPOINT_LIST_TOPOLOGICAL)
    ]


def _delete_checkpoint(domain: libvirt.virDomain, name: str, metadata_only: bool = False) -> None:
    try:
        checkpoint = domain.checkpointLookupByName(name, 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_CHECKPOINT:
            return
        raise
    flags = libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY if metadata_only else 0
    checkpoint.delete(flags)


def _other_disks(xml: str) -> list[str]:
    return [disk.target_dev for disk in parse(xml).disks if disk.target_dev not in ("", BACKUP_DISK)]


def _disk_source(xml: str) -> str:
    for disk in parse(xml).disks:
        if disk.target_dev == BACKUP_DISK and disk.source_file:
            return disk.source_file
    raise HypervisorError("the virtual machine has no disk vda")


@contextlib.contextmanager
def _frozen(domain: libvirt.virDomain, timeout: float) -> Iterator[bool]:
    """Freeze the guest's filesystems through the guest agent for the block; yields whether it froze (a
    guest without an answering agent is backed up crash-consistent). Always thawed afterwards."""
    frozen = False
    try:
        domain.agentSetResponseTimeout(max(1, int(timeout)), 0)
        domain.fsFreeze(None, 0)
        frozen = True
    except libvirt.libvirtError as exc:
        if connection.link_broken(exc) and exc.get_error_code() != libvirt.VIR_ERR_AGENT_UNRESPONSIVE:
            raise
        log.info("no filesystem freeze for %s: %s", domain.UUIDString(), exc.get_error_message())
    try:
        yield frozen
    finally:
        if frozen:
            for attempt in range(3):
                try:
                    domain.fsThaw(None, 0)
                    break
                except libvirt.libvirtError as exc:
                    log.warning("thawing %s failed (attempt %d): %s", domain.UUIDString(), attempt + 1, exc)
                    time.sleep(1)
        with contextlib.suppress(libvirt.libvirtError):
            domain.agentSetResponseTimeout(libvirt.VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_DEFAULT, 0)


def begin(
    host: Host,
    uuid: uuid_module.UUID | str,
    scratch_name: str,
    checkpoint: str,
    since: str = "",
    freeze_timeout: float = 10,
) -> BackupStart:
    """Start a backup of the domain's disk vda into the scratch volume `scratch_name` of the host's pool.

    Running domain: a push-mode backup job creating checkpoint `checkpoint`, incremental since checkpoint
    `since` when the domain has it (else full), the guest's filesystems frozen while it starts when the
    guest agent answers within `freeze_timeout` seconds; wait() follows it. A backup job left running (by
    a killed worker) is aborted first; a checkpoint named `checkpoint` left by an earlier attempt is
    replaced. Shut-off domain: a standalone full copy of the disk (its backing chain read through), made
    before this returns; no checkpoint. A simulated (test) host: an empty scratch volume, full."""
    _check_name(scratch_name)

    def test_work(conn: libvirt.virConnect) -> BackupStart:
        require_domain(conn, uuid)
        pool = _pool(conn, host)
        _delete_volume(pool, scratch_name)
        pool.createXML(Volume(scratch_name, 0, format="raw").to_xml(), 0)
        return BackupStart(incremental=False, frozen=False, offline=False)

    if host.transport == "test":
        return connection.run(host, test_work)

    def live_work(conn: libvirt.virConnect) -> BackupStart | None:
        domain = require_domain(conn, uuid)
        if not domain.isActive():
            return None
        _abort_running(domain)
        pool = _pool(conn, host)
        _delete_volume(pool, scratch_name)
        directory = pool_target_path(pool.XMLDesc(0))
        if not directory:
            raise HypervisorError(f"the storage pool {host.storage_pool} has no directory")
        others = _other_disks(domain.XMLDesc(0))
        names = _checkpoint_names(domain)
        if checkpoint in names:
            _delete_checkpoint(domain, checkpoint)
        incremental = since if since and since != checkpoint and since in names else ""
        backup = vda_only(f"{directory.rstrip('/')}/{scratch_name}", others, incremental)
        checkpoint_xml = DomainCheckpoint(checkpoint, [BACKUP_DISK], others).to_xml()
        with _frozen(domain, freeze_timeout) as frozen:
            domain.backupBegin(backup.to_xml(), checkpoint_xml, 0)
        return BackupStart(incremental=bool(incremental), frozen=frozen, offline=False)

    started = connection.run(host, live_work, timeout=freeze_timeout + ABORT_WAIT + settings.LIBVIRT_TIMEOUT)
    if started is not None:
        return started

    def offline_work(conn: libvirt.virConnect) -> BackupStart:
        domain = require_domain(conn, uuid)
        if domain.isActive():
            raise HypervisorError("the server started while its offline backup was being prepared", True)
        source = conn.storageVolLookupByPath(_disk_source(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)))
        pool = _pool(conn, host)
        _delete_volume(pool, scratch_name)
        capacity = source.info()[1]
        # qemu-img convert on the host: reads the disk through its backing chain, writes a standalone qcow2.
        pool.createXMLFrom(Volume(scratch_name, capacity).to_xml(), source, 0)
        return BackupStart(incremental=False, frozen=False, offline=True)

    return connection.run(host, offline_work, timeout=COPY_TIMEOUT)


def progress(host: Host, uuid: uuid_module.UUID | str) -> tuple[int, int] | None:
    """(bytes done, bytes total) of the running backup job; None when no backup job runs."""
    if host.transport == "test":
        return None

    def work(conn: libvirt.virConnect) -> tuple[int, int] | None:
        domain = find_domain(conn, uuid)
        stats = None if domain is None else _backup_running(domain)
        if stats is None:
            return None
        return int(stats.get("disk_processed", 0)), int(stats.get("disk_total", 0))

    return connection.run(host, work)


def _outcome(host: Host, uuid: uuid_module.UUID | str) -> dict:
    def work(conn: libvirt.virConnect) -> dict:
        domain = find_domain(conn, uuid)
        if domain is None:
            return {"success": False, "errmsg": "the virtual machine disappeared from its host"}
        return job_stats(domain, libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)

    return connection.run(host, work)


def wait(
    host: Host,
    uuid: uuid_module.UUID | str,
    on_progress: Callable[[int, int], None],
    timeout: float,
    poll: float = 1.0,
) -> None:
    """Follow the backup job until it ends, calling on_progress(bytes done, bytes total) after each poll;
    HypervisorError when it failed (libvirt's completed-job statistics say so, or say nothing: libvirtd
    restarted, the domain was destroyed) or did not end within `timeout` seconds (then it is aborted)."""
    if host.transport == "test":
        on_progress(0, 0)
        return
    deadline = time.monotonic() + timeout
    last = (0, 0)
    while True:
        current = progress(host, uuid)
        if current is None:
            break
        last = current
        on_progress(*current)
        if time.monotonic() > deadline:
            abort(host, uuid)
            raise HypervisorError(f"the backup did not finish within {timeout:g} seconds")
        time.sleep(poll)
    outcome = _outcome(host, uuid)
    if outcome.get("operation") != libvirt.VIR_DOMAIN_JOB_OPERATION_BACKUP or not outcome.get("success"):
        reason = outcome.get("errmsg") or "libvirt kept no result of it"
        raise HypervisorError(f"the backup job failed: {reason}")
    total = int(outcome.get("disk_total", last[1]) or last[1])
    on_progress(int(outcome.get("disk_processed", total) or total), total)


THAW_WAIT = 5  # seconds a thaw after a lost worker waits for the guest agent


def _thaw(domain: libvirt.virDomain) -> None:
    """Thaw the guest's filesystems in case a worker that froze them died before it thawed them (a thaw of
    filesystems that are not frozen changes nothing; a guest without an agent answers at once)."""
    with contextlib.suppress(libvirt.libvirtError):
        domain.agentSetResponseTimeout(THAW_WAIT, 0)
        try:
            domain.fsThaw(None, 0)
        finally:
            domain.agentSetResponseTimeout(libvirt.VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_DEFAULT, 0)


def abort(host: Host, uuid: uuid_module.UUID | str) -> None:
    """Abort the domain's running backup job, if any, and wait until it ended (libvirt then removes its
    target file), and thaw the guest's filesystems (a killed worker may have left them frozen);
    idempotent."""
    if host.transport == "test":
        return

    def work(conn: libvirt.virConnect) -> None:
        domain = find_domain(conn, uuid)
        if domain is not None:
            _abort_running(domain)
            if domain.isActive():
                _thaw(domain)

    connection.run(host, work, timeout=ABORT_WAIT + THAW_WAIT + settings.LIBVIRT_TIMEOUT)


def checkpoints(host: Host, uuid: uuid_module.UUID | str) -> list[str]:
    """The domain's checkpoint names, oldest first (none when the domain is missing)."""

    def work(conn: libvirt.virConnect) -> list[str]:
        domain = find_domain(conn, uuid)
        return [] if domain is None else _checkpoint_names(domain)

    return connection.run(host, work)


def delete_checkpoint(host: Host, uuid: uuid_module.UUID | str, name: str) -> None:
    """Delete one checkpoint (its bitmaps with it while the domain runs; only its metadata while it is shut
    off, which libvirt 9.0 allows no more); idempotent. Later checkpoints keep what they track."""

    def work(conn: libvirt.virConnect) -> None:
        domain = find_domain(conn, uuid)
        if domain is not None:
            _delete_checkpoint(domain, name, metadata_only=not domain.isActive())

    connection.run(host, work)


def drop_checkpoints(host: Host, uuid: uuid_module.UUID | str, metadata_only: bool = False) -> None:
    """Delete every checkpoint of the domain; idempotent.

    Running domain: with their dirty bitmaps. Shut-off domain: libvirt refuses to delete checkpoints then
    ("cannot delete checkpoint for inactive domain"), so with `metadata_only` (the disk is being replaced,
    its bitmaps go with it) only the metadata goes; without it the domain is started paused for the
    moment the deletion takes and destroyed again (the bitmaps would otherwise stay in the disk and keep
    internal snapshots from being reverted to: "Device has active dirty bitmaps")."""

    def work(conn: libvirt.virConnect) -> None:
        domain = find_domain(conn, uuid)
        if domain is None or not domain.listAllCheckpoints(0):
            return
        started = False
        if not domain.isActive() and not metadata_only:
            domain.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
            started = True
        try:
            live = domain.isActive()
            for name in reversed(_checkpoint_names(domain)):  # newest first: no child left orphaned
                _delete_checkpoint(domain, name, metadata_only=not live)
        finally:
            if started:
                with contextlib.suppress(libvirt.libvirtError):
                    domain.destroy()

    connection.run(host, work, timeout=max(120.0, settings.LIBVIRT_TIMEOUT))


def read_volume(host: Host, name: str, chunk: int = 1 << 20) -> Iterator[bytes]:
    """The bytes of the volume `name` in the host's pool (the file as it is: a qcow2 file's own bytes),
    through a libvirt download stream; nothing on a simulated host. Closing the iterator early aborts the
    stream."""
    return download(host, host.storage_pool, host.storage_pool_path, name, chunk)


def download(host: Host, pool_name: str, pool_path: str, name: str, chunk: int = 1 << 20) -> Iterator[bytes]:
    """The bytes of the volume `name` in the host's pool `pool_name` (made a dir pool at `pool_path` when
    missing), read through a libvirt stream; nothing on a simulated host. HypervisorError when it is
    missing or the stream breaks."""
    _check_name(name)
    if host.transport == "test":
        return

    def open_stream(conn: libvirt.virConnect) -> libvirt.virStream:
        volume = _lookup(ensure_pool(conn, pool_name, pool_path), name)
        if volume is None:
            raise HypervisorError(f"no volume {name} in the storage pool {pool_name}")
        stream = conn.newStream(0)
        volume.download(stream, 0, 0, 0)
        return stream

    stream = connection.run(host, open_stream)
    finished = False
    try:
        while True:
            data = connection.run(host, lambda _conn: stream.recv(chunk), timeout=STREAM_TIMEOUT)
            if isinstance(data, int):  # -2: would block (non-blocking streams only); -1: error
                raise HypervisorError(f"reading {name} from the host failed")
            if not data:
                connection.run(host, lambda _conn: stream.finish())
                finished = True
                return
            yield data
    finally:
        if not finished:
            with contextlib.suppress(HypervisorError, libvirt.libvirtError):
                connection.run(host, lambda _conn: stream.abort())


def upload(host: Host, pool_name: str, pool_path: str, name: str, chunks: Iterable[bytes]) -> int:
    """Write the chunks into a new raw volume `name` of the host's pool `pool_name` (made a dir pool at
    `pool_path` when missing; a volume of that name is replaced) through a libvirt stream; returns the
    number of bytes. A simulated host gets an empty volume (the chunks are read all the same). On failure
    the volume is removed."""
    _check_name(name)

    def create(conn: libvirt.virConnect) -> tuple[libvirt.virStorageVol, libvirt.virStream | None]:
        pool = ensure_pool(conn, pool_name, pool_path)
        _delete_volume(pool, name)
        volume = pool.createXML(Volume(name, 0, format="raw").to_xml(), 0)
        if host.transport == "test":
            return volume, None
        stream = conn.newStream(0)
        volume.upload(stream, 0, 0, 0)  # length 0: as much as the stream carries
        return volume, stream

    volume, stream = connection.run(host, create)
    size = 0
    done = False
    try:
        for data in chunks:
            size += len(data)
            if stream is None or not data:
                continue
            while data:
                sent = connection.run(host, lambda _conn, data=data: stream.send(data), STREAM_TIMEOUT)
                if sent < 0:
                    raise HypervisorError(f"writing {name} to the host failed")
                data = data[sent:]
        if stream is not None:
            connection.run(host, lambda _conn: stream.finish(), timeout=STREAM_TIMEOUT)
        done = True
        return size
    finally:
        if not done:
            if stream is not None:
                with contextlib.suppress(HypervisorError, libvirt.libvirtError):
                    connection.run(host, lambda _conn: stream.abort())
            with contextlib.suppress(HypervisorError, libvirt.libvirtError):
                connection.run(host, lambda _conn: volume.delete(0))


def delete_pool_volume(host: Host, pool_name: str, pool_path: str, name: str) -> None:
    """Remove the volume from the host's pool `pool_name`, if it is there (and the pool)."""
    _check_name(name)
    connection.run(host, lambda conn: _delete_volume(ensure_pool(conn, pool_name, pool_path), name))


def pool_volume_exists(host: Host, pool_name: str, pool_path: str, name: str) -> bool:
    """Whether the host's pool `pool_name` has a volume of that name."""
    _check_name(name)
    pool = lambda conn: ensure_pool(conn, pool_name, pool_path)  # noqa: E731
    return connection.run(host, lambda conn: _lookup(pool(conn), name) is not None)


def volume_size(host: Host, name: str) -> int:
    """The size in bytes of the volume's file (what read_volume yields; for qcow2 not the virtual size)."""
    _check_name(name)

    def work(conn: libvirt.virConnect) -> int:
        volume = _lookup(_pool(conn, host), name)
        if volume is None:
            raise HypervisorError(f"no volume {name} on the host")
        if host.transport == "test":
            return volume.info()[2]
        return volume.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2]

    return connection.run(host, work)


def delete_volume(host: Host, name: str) -> None:
    """Remove the volume from the host's pool, if it is there."""
    _check_name(name)
    connection.run(host, lambda conn: _delete_volume(_pool(conn, host), name))


def write_disk(host: Host, volume_name: str, local_path: Path, capacity_bytes: int) -> str:
    """Replace the volume `volume_name` in the host's pool by the local qcow2 file (upload stream), grown to
    `capacity_bytes` when its virtual size is smaller; return the volume's path. The domain using it must
    be shut off (the caller's part). A simulated host gets the volume, without data."""
    _check_name(volume_name)
    local_path = Path(local_path)
    size = local_path.stat().st_size

    def work(conn: libvirt.virConnect) -> str:
        pool = _pool(conn, host)
        _delete_volume(pool, volume_name)
        if host.transport == "test":
            return pool.createXML(Volume(volume_name, capacity_bytes).to_xml(), 0).path()
        # Made as raw of the file's length and filled with the qcow2 file's bytes; a refresh then reads
        # it as the qcow2 it is (a resize must see qcow2, or it would grow the file, not the disk).
        volume = pool.createXML(Volume(volume_name, size, format="raw").to_xml(), 0)
        stream = conn.newStream(0)
        volume.upload(stream, 0, size, 0)
        try:
            with open(local_path, "rb") as handle:
                stream.sendAll(lambda _stream, nbytes, fh: fh.read(nbytes), handle)
            stream.finish()
        except BaseException:
            with contextlib.suppress(libvirt.libvirtError):
                stream.abort()
            with contextlib.suppress(libvirt.libvirtError):
                volume.delete(0)
            raise
        connection.when_pool_idle(lambda: pool.refresh(0))
        volume = pool.storageVolLookupByName(volume_name)
        if _volume_format(volume) != "qcow2":
            volume.delete(0)
            raise HypervisorError(f"the uploaded disk {volume_name} is not a qcow2 image")
        if volume.info()[1] < capacity_bytes:
            volume.resize(capacity_bytes, 0)
        return volume.path()

    return connection.run(host, work, timeout=COPY_TIMEOUT)


def _volume_format(volume: libvirt.virStorageVol) -> str:
    element = etree.fromstring(volume.XMLDesc(0).encode()).find("target/format")
    return element.get("type", "") if element is not None else ""
