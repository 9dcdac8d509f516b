"""A worker killed in the middle of a backup (on the real libvirtd, kept in a directory over SSH) leaves the
backup listed as running, never as succeeded; the redelivered task discards what the killed attempt left
(its job, checkpoint, scratch volume and file) and takes a complete full backup. When the attempts run
out, or the reaper fails it, the backup is failed and nothing of it is left on the host or the backup server
(once pruned). A damaged backup is refused before the server is touched."""

from __future__ import annotations

from datetime import timedelta

import libvirt
import pytest
from django.utils import timezone

from panel.backups import policies, pruning
from panel.models import Backup, Operation
from panel.servers import actions, operation_records, operations
from tests import factories

pytestmark = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]


class WorkerKilled(BaseException):
    """Stands for a SIGKILL at a pause point: nothing after it runs, nothing is cleaned up."""


@pytest.fixture
def server(customer, kvm_host, ssh_backup_target, libvirtd):
    target, _directory = ssh_backup_target
    region = kvm_host.region
    region.backup_target = target
    region.save()
    plan = factories.make_plan(slug="tiny-backup", vcpus=1, memory_mib=128, disk_gib=1)
    server = factories.make_real_server(customer, plan=plan, image=factories.make_image(), region=region)
    policies.update_policy(server, customer, enabled=True, schedule="daily", retention=3)
    return server


def kill_at(monkeypatch, step: str) -> None:
    def killed_at(name: str) -> None:
        if name == step:
            raise WorkerKilled(name)

    monkeypatch.setattr(operation_records, "pause_point", killed_at)


def scratch_volumes(libvirtd, server) -> list[str]:
    pool = libvirtd.storagePoolLookupByName("default")
    pool.refresh(0)  # the backup job writes its file behind libvirt's back
    return [name for name in pool.listVolumes() if f"{server.id}-backup" in name]


def test_a_killed_backup_is_never_listed_good_and_the_redelivery_completes_it(
    server, customer, api, ssh_backup_target, libvirtd, monkeypatch
):
    """Killed after the copy is on the backup server and before the row says so (the scratch volume, the
    checkpoint and the file are all left): the redelivery discards them and takes a full backup."""
    _target, directory = ssh_backup_target
    operation = actions.perform(server, "backup", customer, {})
    kill_at(monkeypatch, "backup:stored")
    with pytest.raises(WorkerKilled):
        operations.execute(str(operation.pk))
    monkeypatch.undo()

    listed = api(customer).get(f"/api/v1/servers/{server.id}/backups/").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert [row["status"] for row in rows] == ["running"]

    operation = factories.run_operation(operation)  # the redelivery (the lease is this process's own)
    assert operation.status == "succeeded", (operation.error, operation.detail)
    backup = Backup.objects.get(operation=operation)
    assert (backup.status, backup.kind) == ("succeeded", "full")
    assert sorted(path.name for path in directory.iterdir()) == [backup.location]
    assert scratch_volumes(libvirtd, server) == []
    domain = libvirtd.lookupByUUIDString(str(server.id))
    assert [each.getName() for each in domain.listAllCheckpoints(0)] == [
        backup.checkpoint
    ]  # the killed attempt's is gone


def test_a_backup_whose_attempts_run_out_is_failed_and_leaves_nothing(
    server, customer, ssh_backup_target, libvirtd, monkeypatch, settings
):
    _target, directory = ssh_backup_target
    settings.OPERATION_MAX_ATTEMPTS = 1
    operation = actions.perform(server, "backup", customer, {})
    kill_at(monkeypatch, "backup:stored")
    with pytest.raises(WorkerKilled):
        operations.execute(str(operation.pk))
    monkeypatch.undo()

    operation = factories.run_operation(operation)
    assert operation.status == "failed"
    backup = Backup.objects.get(operation=operation)
    assert backup.status == "failed"
    assert list(directory.iterdir()) == []
    assert scratch_volumes(libvirtd, server) == []
    server.refresh_from_db()
    assert (server.status, server.task) == ("running", None)
    assert libvirtd.lookupByUUIDString(str(server.id)).jobInfo()[0] == libvirt.VIR_DOMAIN_JOB_NONE
    assert Operation.objects.filter(server=server, type="backup", status="failed").count() == 1


def test_a_reaped_backup_leaves_nothing_once_pruned(
    server, customer, ssh_backup_target, libvirtd, monkeypatch
):
    """Killed after its file was stored and never redelivered: the reaper fails it at its deadline, and
    pruning removes its file from the backup server and its scratch volume from the host."""
    _target, directory = ssh_backup_target
    operation = actions.perform(server, "backup", customer, {})
    kill_at(monkeypatch, "backup:stored")
    with pytest.raises(WorkerKilled):
        operations.execute(str(operation.pk))
    monkeypatch.undo()
    backup = Backup.objects.get(operation=operation)
    assert [path.name for path in directory.iterdir()] == [backup.file_name]
    assert scratch_volumes(libvirtd, server) == [backup.scratch_name]

    Operation.objects.filter(pk=operation.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    assert operations.reap_stuck_operations() == 1
    backup.refresh_from_db()
    assert backup.status == "failed"
    later = timezone.now() + timedelta(days=2)
    pruning.prune(server, later)
    assert pruning.delete_due(later) == 1
    assert list(directory.iterdir()) == []
    assert scratch_volumes(libvirtd, server) == []


def test_a_damaged_backup_is_refused_before_the_server_is_touched(
    server, customer, ssh_backup_target, libvirtd
):
    _target, directory = ssh_backup_target
    backup = Backup.objects.get(
        operation=factories.run_operation(actions.perform(server, "backup", customer, {}))
    )
    path = directory / backup.location
    path.write_bytes(path.read_bytes()[:-1] + b"x")  # one byte differs on the backup server
    restore = factories.run_operation(
        actions.perform(server, "restore_backup", customer, {"backup": backup.pk})
    )
    assert restore.status == "failed" and "damaged" in restore.detail
    server.refresh_from_db()
    assert (server.status, server.status_reason, server.task) == ("running", None, None)
    assert libvirtd.lookupByUUIDString(str(server.id)).isActive()
