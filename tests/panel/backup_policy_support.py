"""Rows the backup policy, schedule and pruning tests share: a region's backup target (a storage pool on a
second host that no server is placed on), and backups made directly as the worker leaves them."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from hypervisor.models import BackupTarget, Region
from panel.models import Backup, Server
from tests import factories


def give_backup_target(region: Region) -> BackupTarget:
    """The region keeps its backups in a storage pool of another host (registered, never probed: nothing
    is placed on it)."""
    host = factories.make_host(region=region, name=f"backup-store-{region.slug}", probe=False)
    target = BackupTarget.objects.create(
        name=f"pool-{region.slug}",
        kind=BackupTarget.Kind.HOST_POOL,
        host=host,
        pool="vpspanel-backups",
        pool_path="/var/lib/libvirt/vpspanel-backups",
    )
    Region.objects.filter(pk=region.pk).update(backup_target=target)
    region.refresh_from_db()
    return target


def make_backup(
    server: Server,
    created_at: datetime,
    *,
    status: str = Backup.Status.SUCCEEDED,
    kind: str = Backup.Kind.FULL,
    parent: Backup | None = None,
    target: BackupTarget | None = None,
    **fields,
) -> Backup:
    """A backup row as a finished run leaves it (its file named after its id on the target)."""
    backup = Backup.objects.create(
        server=server,
        status=status,
        kind=kind,
        parent=parent,
        target=target or server.region.backup_target,
        source_host=server.host,
        size_bytes=1024 if status == Backup.Status.SUCCEEDED else None,
        completed_at=created_at if status in (Backup.Status.SUCCEEDED, Backup.Status.FAILED) else None,
        **fields,
    )
    location = f"{server.pk}-{backup.pk}.qcow2.gz" if status == Backup.Status.SUCCEEDED else ""
    # created_at is set on insert (auto_now_add): put it where the test wants it.
    Backup.objects.filter(pk=backup.pk).update(created_at=created_at, location=location)
    backup.refresh_from_db()
    return backup


def now() -> datetime:
    return timezone.now()
