"""The worker side of backups (panel.servers.operations runs these for the `backup` and `restore_backup`
operations, and for a create from a backup).

A backup: libvirt's push-mode backup job copies the server's disk, while it runs, into a scratch volume in
its host's own pool (incremental since the last backup's checkpoint where the chain allows, full
otherwise; hypervisor.disk_backup freezes the guest's filesystems through its agent when it answers). The
worker streams the scratch volume through gzip to the region's backup target, which verifies the sha256
of what it holds (hypervisor.backup_targets), then deletes the scratch. Only then is the Backup row
`succeeded`, in the transaction that closes the operation: a worker killed anywhere before leaves the row
running (the redelivered task discards what the killed attempt left and starts again, full), and a
failure marks it failed and removes its leftovers. Nothing of a backup stays on the host it protects.

A restore: the chain (the full backup and the incrementals up to the one chosen) is fetched, each file's
sha256 checked, decompressed and assembled into one standalone disk image in the worker's spool
directory (hypervisor.backup_images), which replaces the server's disk on its host.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import uuid
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from hypervisor import backup_images, backup_targets, disk_backup, driver
from hypervisor.connection import HypervisorError
from hypervisor.models import BackupTarget, Host
from hypervisor.xml.storage import GIB
from panel.backups import pruning
from panel.models import Backup, BackupPolicy, Operation, Server, Snapshot
from panel.servers import guest, operation_states, operation_steps
from panel.servers.leases import LeaseLost
from panel.servers.operation_records import (
    Progress,
    announce,
    finish,
    finished_or_stop,
    host_of,
    remember,
    step,
    was_running,
)
from panel.servers.states import PowerState, Status
from panel.usage import metering

log = logging.getLogger(__name__)

ON_OWN_HOST = gettext_noop("the region's backup target is a storage pool on the server's own host")
# What the customer is told when a restore failed after it had begun replacing the disk.
RESTORE_LEFT_DISK = gettext_noop(
    "Restoring the backup failed after the server's disk was taken away. Restore the backup again, or "
    "rebuild the server."
)


def checkpoint_name(backup: Backup) -> str:
    return f"vpspanel-backup-{backup.pk}"


def _incremental_base(server: Server, host: Host, target: BackupTarget, retry: bool) -> Backup | None:
    """The backup the next one may be incremental on: the server's latest complete backup, when it ended at
    a checkpoint the domain still has, on the same target, and the chain with the new backup holds at most
    BACKUP_CHAIN_MAX incrementals and no more backups than the policy keeps (so that pruning keeps at most
    one chain besides those kept). None (a full backup) after a retry, a restore, a rebuild, a snapshot
    revert, an offline backup or a failed chain."""
    if retry:
        return None
    latest = (
        Backup.objects.filter(server=server, status=Backup.Status.SUCCEEDED, delete_after__isnull=True)
        .order_by("-completed_at", "-pk")
        .first()
    )
    if latest is None or not latest.checkpoint or latest.target_id != target.pk:
        return None
    try:
        chain = chain_of(latest)
    except HypervisorError:
        return None
    retention = BackupPolicy.objects.filter(pk=server.pk).values_list("retention", flat=True).first() or 1
    if len(chain) >= min(settings.BACKUP_CHAIN_MAX + 1, retention):
        return None
    if latest.checkpoint not in disk_backup.checkpoints(host, server.id):
        return None
    return latest


def chain_of(backup: Backup, going_ok: bool = False) -> list[Backup]:
    """The backups a restore of `backup` reads, the full one first; HypervisorError when one of them is
    missing, incomplete or going (`going_ok`: an operation that was accepted reads backups marked to go
    since; pruning removes none of them while it is open)."""
    chain = [backup]
    while chain[-1].parent_id is not None:
        parent = Backup.objects.select_related("target", "target__host").get(pk=chain[-1].parent_id)
        chain.append(parent)
    chain.reverse()
    for member in chain:
        going = member.delete_after is not None and not going_ok
        if member.status != Backup.Status.SUCCEEDED or going:
            raise HypervisorError(f"backup {member.pk} of the chain is not complete")
    if chain[0].kind != Backup.Kind.FULL:
        raise HypervisorError(f"the chain of backup {backup.pk} does not start with a full backup")
    return chain


def _discard_leftovers(host: Host, server: Server, backup: Backup) -> None:
    """What an earlier attempt of this backup may have left: its libvirt job, its checkpoints (a retry takes
    a full backup), its scratch volume and its file on the target."""
    disk_backup.abort(host, server.id)
    disk_backup.drop_checkpoints(host, server.id)
    disk_backup.delete_volume(host, backup.scratch_name)
    backup_targets.delete(backup.target, backup.file_name)


def backup(operation: Operation) -> None:
    server = operation.server
    host = host_of(server)
    row = Backup.objects.select_related("target", "target__host").get(operation=operation)
    target = row.target
    if target.kind == BackupTarget.Kind.HOST_POOL and target.host_id == server.host_id:
        raise HypervisorError(ON_OWN_HOST)
    taking = Backup.objects.filter(pk=row.pk, status__in=(Backup.Status.PENDING, Backup.Status.RUNNING))
    if not taking.update(status=Backup.Status.RUNNING, error="", source_host=host):
        # The row was failed meanwhile (a failure recorded by a worker that died before it closed the
        # operation): the operation is left for the reaper, and nothing is taken.
        raise LeaseLost(f"backup {row.pk} was closed meanwhile")
    retry = operation.attempts > 1
    if retry:
        _discard_leftovers(host, server, row)
    parent = _incremental_base(server, host, target, retry)
    checkpoint = checkpoint_name(row)
    scratch = row.scratch_name
    announce(operation, operation_steps.BACKUP_DISK)
    started = disk_backup.begin(
        host, server.id, scratch, checkpoint, since=parent.checkpoint if parent else "",
        freeze_timeout=settings.GUEST_AGENT_TIMEOUT,
    )  # fmt: skip
    progress = Progress(operation)
    if not started.offline and host.transport != "test":
        remaining = (operation.deadline - timezone.now()).total_seconds()
        disk_backup.wait(host, server.id, progress, timeout=max(60.0, remaining))
    step(operation, "backup:taken")
    copied = disk_backup.volume_size(host, scratch)
    announce(operation, operation_steps.BACKUP_COPY)
    progress(0, copied)
    chunks = backup_images.tap(disk_backup.read_volume(host, scratch), on_bytes=progress)
    stored = backup_targets.store(target, row.file_name, backup_images.compress(chunks))
    step(operation, "backup:stored")
    disk_backup.delete_volume(host, scratch)
    incremental = started.incremental and parent is not None
    with transaction.atomic():
        succeeded = Backup.objects.filter(pk=row.pk, status=Backup.Status.RUNNING).update(
            status=Backup.Status.SUCCEEDED,
            kind=Backup.Kind.INCREMENTAL if incremental else Backup.Kind.FULL,
            parent=parent if incremental else None,
            checkpoint="" if started.offline else checkpoint,
            location=stored.name,
            size_bytes=stored.size,
            sha256=stored.sha256,
            copied_bytes=copied,
            disk_bytes=server.disk_gib * GIB,
            completed_at=timezone.now(),
        )
        if not succeeded:
            raise LeaseLost(f"backup {row.pk} was closed meanwhile")  # rolls back; pruning removes the file
        finished_or_stop(finish(operation), operation)
    # The oldest backups beyond the retention are marked to go now (the beat's prune-backups removes their
    # files); a crash before this leaves them to the beat's own pruning.
    pruning.prune(server)
    if not started.offline:
        _keep_only_checkpoint(host, server, checkpoint)


def mark_backup_failed(operation: Operation, message: str) -> Backup | None:
    """Mark the operation's backup failed (never listed good); returns it."""
    row = Backup.objects.select_related("target", "target__host", "server__host").filter(operation=operation)
    row = row.first()
    if row is not None:
        Backup.objects.filter(pk=row.pk).exclude(status=Backup.Status.SUCCEEDED).update(
            status=Backup.Status.FAILED, error=message[:2000], completed_at=timezone.now()
        )
    return row


def backup_failed(operation: Operation, message: str) -> None:
    """Mark the operation's backup failed and remove what it left, as far as the host and the target answer
    (pruning removes a failed backup's file later otherwise)."""
    row = mark_backup_failed(operation, message)
    if row is None:
        return
    host = row.server.host
    try:
        if host is not None and host.state != Host.State.DOWN:
            disk_backup.abort(host, row.server_id)
            disk_backup.delete_volume(host, row.scratch_name)
        backup_targets.delete(row.target, row.file_name)
    except HypervisorError as exc:
        log.warning("cleaning up after the failed backup %s: %s", row.pk, exc.message)


def _keep_only_checkpoint(host: Host, server: Server, checkpoint: str) -> None:
    """Delete the domain's older checkpoints (the next incremental starts from the newest): each one costs a
    bitmap in the disk. Best effort: one left over costs only that."""
    try:
        for name in disk_backup.checkpoints(host, server.id):
            if name != checkpoint:
                disk_backup.delete_checkpoint(host, server.id, name)
    except HypervisorError as exc:
        log.warning("deleting old checkpoints of %s: %s", server.id, exc.message)


def _spool(operation: Operation) -> Path:
    """The operation's own directory in this worker's spool, empty (what an earlier attempt left goes), after
    removing what operations that have closed meanwhile left there (a worker killed while it assembled)."""
    root = Path(settings.BACKUP_SPOOL_DIR)
    _sweep(root)
    path = root / str(operation.pk)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, mode=0o700)
    return path


def _sweep(root: Path) -> None:
    if not root.is_dir():
        return
    names = {entry.name: entry for entry in root.iterdir() if entry.is_dir()}
    ids = [name for name in names if _is_uuid(name)]
    open_ids = {
        str(pk)
        for pk in Operation.objects.filter(pk__in=ids, status__in=operation_states.OPEN).values_list(
            "pk", flat=True
        )
    }
    for name in ids:
        if name not in open_ids:
            shutil.rmtree(names[name], ignore_errors=True)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _assemble(operation: Operation, chain: list[Backup], spool: Path) -> Path:
    """Fetch each backup of the chain into the spool (its sha256 checked), then assemble them into one
    standalone disk image; returns its path."""
    progress = Progress(operation, total=sum(member.size_bytes or 0 for member in chain))
    announce(operation, operation_steps.FETCH_BACKUP)
    files = []
    before = 0  # the bytes of the chain's earlier files
    for member in chain:
        digest = hashlib.sha256()
        fetched = backup_images.tap(
            backup_targets.fetch(member.target, member.location),
            digest,
            lambda done, before=before: progress(before + done),
        )
        path = spool / f"{member.pk}.qcow2"
        backup_images.decompress_to(fetched, path)
        before += member.size_bytes or 0
        if digest.hexdigest() != member.sha256:
            raise HypervisorError(f"backup {member.pk} is damaged on its target: its checksum differs")
        files.append(path)
    image = spool / "disk.qcow2"
    backup_images.assemble(files, image)
    return image


def _simulated(host: Host, chain: list[Backup]) -> bool:
    """libvirt's simulated driver stores no data: a backup taken there, or a server made there, has none to
    carry (the fast tests and the demo)."""
    return host.transport == "test" or any(
        member.target.host is not None and member.target.host.transport == "test" for member in chain
    )


def _disk_image(operation: Operation, host: Host, chain: list[Backup], spool: Path) -> Path:
    """The disk the chain holds, assembled in the spool directory (an empty file for a simulated host)."""
    if _simulated(host, chain):
        if host.transport != "test":
            raise HypervisorError("the backup was kept on a simulated host: it holds no data")
        image = spool / "empty.qcow2"
        image.touch()
        return image
    return _assemble(operation, chain, spool)


def disk_for_new_server(operation: Operation, host: Host, request: driver.DomainRequest) -> str:
    """A create from a backup: the new server's disk is written from it once (a retry after that reuses
    it); returns its path."""
    if operation.params.get("disk_written"):
        return driver.disk_path(host, request)
    backup_row = Backup.objects.select_related("target", "target__host").get(pk=operation.params["backup"])
    chain = chain_of(backup_row, going_ok=True)
    spool = _spool(operation)
    try:
        image = _disk_image(operation, host, chain, spool)
        step(operation, "create:assembled")
        announce(operation, operation_steps.WRITE_DISK)
        path = disk_backup.write_disk(host, request.volume_name, image, request.disk_gib * GIB)
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    remember(operation, disk_written=True)
    return path


def restore_backup(operation: Operation) -> None:
    """Replace the server's disk with the backup's: the domain, its seed (the same instance id, so the guest
    keeps its identity and addresses) and its definition stay; snapshots and checkpoints of the old disk
    go. The backup is fetched, checked and assembled while the server still runs (a damaged or unreachable
    backup changes nothing); then the server is powered off, its disk written, and started again if it
    ran."""
    server = operation.server
    host = host_of(server)
    row = Backup.objects.select_related("target", "target__host").get(
        pk=operation.params["backup"], server=server
    )
    chain = chain_of(row, going_ok=True)
    running = was_running(operation)
    spool = _spool(operation)
    try:
        image = _disk_image(operation, host, chain, spool)
        step(operation, "restore_backup:assembled")
        announce(operation, operation_steps.POWER_OFF)
        if running:
            metering.meter_server(server)
        driver.power_off(host, server.id)
        remember(operation, disk_replacing=True)
        driver.drop_snapshots(host, server.id)
        disk_backup.drop_checkpoints(host, server.id, metadata_only=True)  # the disk they live in goes
        step(operation, "restore_backup:stopped")
        announce(operation, operation_steps.WRITE_DISK)
        disk_backup.write_disk(
            host, guest.domain_request(server, None).volume_name, image, server.disk_gib * GIB
        )
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    step(operation, "restore_backup:written")
    state = PowerState.SHUTOFF
    if running:
        announce(operation, operation_steps.BOOT)
        state = driver.start(host, server.id)
        metering.after_start(server)
    with transaction.atomic():
        Snapshot.objects.filter(server=server).delete()  # they lived in the replaced disk
        closed = finish(
            operation,
            status=Status.RUNNING if running else Status.STOPPED,
            power_state=state,
            status_reason=None,
            disk_grows_with_snapshots=True,  # the written disk is qcow2 version 3
        )
        finished_or_stop(closed, operation)


def restore_failed_changes(operation: Operation) -> dict:
    """The server's changes when a restore fails: none before it began replacing the disk (the server is as
    it was); after that the server is stopped, saying what to do."""
    if not operation.params.get("disk_replacing"):
        return {}
    return {"status": Status.STOPPED, "power_state": PowerState.SHUTOFF, "status_reason": RESTORE_LEFT_DISK}
