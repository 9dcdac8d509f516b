"""Which backups go, and removing them.

A backup that is to go gets `delete_after` (it is no longer listed); `delete_due` removes its file from
the target once that moment has come, then its row. Marked to go:

- `prune`: the server's succeeded backups beyond its policy's retention (the newest are kept), except a
  backup a kept one depends on (an incremental needs its whole parent chain), one a backup being taken
  builds on, and one an open operation reads (a restore, a new server from it); and failed backups older
  than FAILED_KEPT;
- `on_server_deleted`: every backup of a deleted server, BACKUP_DELETE_GRACE_DAYS from now (0: now).

`delete_due` removes children before their parents (a parent is never removed while a child row exists),
and a target that fails leaves the row for the next run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from hypervisor import backup_targets, disk_backup
from hypervisor.models import Host
from panel.models import Backup, BackupPolicy, Operation, Server
from panel.servers import operation_states
from panel.servers.states import Task

log = logging.getLogger(__name__)

# Failed backups are listed this long (the customer sees what failed), then they go.
FAILED_KEPT = timedelta(days=1)


def _retention(server: Server) -> int:
    kept = BackupPolicy.objects.filter(pk=server.pk).values_list("retention", flat=True).first()
    return kept if kept is not None else settings.BACKUP_RETENTION_DEFAULT


def _with_ancestors(ids: Iterable[int], parents: dict[int, int | None]) -> set[int]:
    """The backups `ids` and every backup their chains build on."""
    found: set[int] = set()
    for backup_id in ids:
        while backup_id is not None and backup_id not in found:
            found.add(backup_id)
            backup_id = parents.get(backup_id)
    return found


def in_use() -> set[int]:
    """The backups open operations read (a restore, a new server made from one, a backup being taken)."""
    values = Operation.objects.filter(status__in=operation_states.OPEN, params__has_key="backup").values_list(
        "params__backup", flat=True
    )
    return {int(value) for value in values if isinstance(value, int) or str(value).isdigit()}


def prune(server: Server, now: datetime | None = None) -> int:
    """Mark the server's backups that are to go (see the module's docstring); the number marked."""
    now = now or timezone.now()
    rows = list(
        Backup.objects.filter(server=server)
        .order_by("-created_at", "-pk")
        .values("pk", "parent_id", "status", "delete_after", "created_at")
    )
    parents = {row["pk"]: row["parent_id"] for row in rows}
    succeeded = [
        row["pk"] for row in rows if row["status"] == Backup.Status.SUCCEEDED and row["delete_after"] is None
    ]
    retention = _retention(server)
    kept = succeeded[:retention]
    taking = [row["pk"] for row in rows if row["status"] in (Backup.Status.PENDING, Backup.Status.RUNNING)]
    used = in_use() & set(parents)
    protected = _with_ancestors([*kept, *taking, *used], parents)
    going = [backup_id for backup_id in succeeded[retention:] if backup_id not in protected]
    failed = [
        row["pk"]
        for row in rows
        if row["status"] == Backup.Status.FAILED
        and row["delete_after"] is None
        and row["created_at"] < now - FAILED_KEPT
        and row["pk"] not in protected
    ]
    if not going and not failed:
        return 0
    return Backup.objects.filter(pk__in=[*going, *failed], delete_after__isnull=True).update(delete_after=now)


def mark_going(server: Server, now: datetime) -> int:
    """Every backup of the server goes after BACKUP_DELETE_GRACE_DAYS (0: now); the number marked."""
    return Backup.objects.filter(server=server, delete_after__isnull=True).update(
        delete_after=now + timedelta(days=settings.BACKUP_DELETE_GRACE_DAYS)
    )


def on_server_deleted(server: Server, now: datetime | None = None) -> int:
    """The server is deleted: its backups go after BACKUP_DELETE_GRACE_DAYS (0: now), and its policy is
    turned off (its subscription, and with it the add-on, ended with the server). The number marked."""
    now = now or timezone.now()
    with transaction.atomic():
        BackupPolicy.objects.filter(pk=server.pk).update(enabled=False, next_run_at=None)
        return mark_going(server, now)


def prune_all(now: datetime | None = None) -> int:
    """Prune every server that has backups not marked to go (the beat); a deleted server's are marked as
    on_server_deleted does. The number marked."""
    now = now or timezone.now()
    marked = 0
    server_ids = (
        Backup.objects.filter(delete_after__isnull=True).values_list("server_id", flat=True).distinct()
    )
    for server in Server.objects.filter(pk__in=list(server_ids)).only("pk", "status"):
        try:
            if server.status == Server.Status.DELETED:
                marked += on_server_deleted(server, now)
            else:
                marked += prune(server, now)
        except Exception:
            log.exception("could not prune the backups of server %s", server.pk)
    return marked


def delete_due(now: datetime | None = None, limit: int = 100) -> int:
    """Remove the files and then the rows of at most `limit` backups whose `delete_after` has come, newest
    first (children before their parents); the number removed. A backup an open operation reads, or with a
    child row left, waits; a target that fails leaves the row for the next run."""
    now = now or timezone.now()
    used = in_use()
    candidates = list(
        Backup.objects.filter(delete_after__lte=now)
        .order_by("-created_at", "-pk")
        .values_list("pk", flat=True)[:limit]
    )
    removed = 0
    for backup_id in candidates:
        if backup_id in used:
            continue
        try:
            removed += _remove(backup_id, now)
        except Exception:
            log.exception("could not remove backup %s from its target; trying again later", backup_id)
    return removed


def _remove_scratch(backup: Backup) -> None:
    """Remove a failed backup's scratch volume from the host it was taken on (when that host answers), and
    abort its job unless another backup of the server runs now (its own job would be the one aborted)."""
    host = backup.source_host
    if host is None or host.state == Host.State.DOWN:
        return
    busy = Operation.objects.filter(
        server=backup.server_id, type=Task.BACKUP, status__in=operation_states.OPEN
    ).exists()
    if not busy:
        disk_backup.abort(host, backup.server_id)
    disk_backup.delete_volume(host, backup.scratch_name)


def _remove(backup_id: int, now: datetime) -> int:
    """Remove one backup's file, then its row. No transaction is open while the target is asked (its delete
    is idempotent: two runs removing the same file both succeed); the row goes only if it is still due
    and nothing was built on it meanwhile."""
    due = Backup.objects.select_related("target", "target__host", "source_host").filter(
        pk=backup_id, delete_after__lte=now
    )
    backup = due.first()
    if backup is None or Backup.objects.filter(parent_id=backup.pk).exists():
        return 0
    # A backup that never succeeded has no location, but may have left its file (a worker killed after the
    # copy, then reaped) and, on its host, its scratch volume.
    backup_targets.delete(backup.target, backup.location or backup.file_name)
    if backup.status != Backup.Status.SUCCEEDED:
        _remove_scratch(backup)
    with transaction.atomic():
        if Backup.objects.filter(parent_id=backup.pk).exists():
            return 0
        deleted, _ = Backup.objects.filter(pk=backup.pk, delete_after__lte=now).delete()
    return 1 if deleted else 0
