"""A worker killed in the middle of a backup (on the real libvirtd, kept in a directory over SSH) leaves the
backup listed as running, never as succeeded; the redelivered task discards what the killed attempt left
(its job, checkpoint, scratch volume and file) and takes a complete full backup. When the attempts run
out, the backup is failed and nothing of it is left on the host or the backup server."""

from __future__ import annotations

import libvirt
import pytest

from panel.backups import policies
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
    return [
        name
        for name in libvirtd.storagePoolLookupByName("default").listVolumes()
        if f"{server.id}-backup" in name
    ]


@pytest.mark.parametrize("step", ["backup:taken", "backup:stored"])
def test_a_killed_backup_is_never_listed_good_and_the_redelivery_completes_it(
    step, server, customer, api, ssh_backup_target, libvirtd, monkeypatch
):
    _target, directory = ssh_backup_target
    operation = actions.perform(server, "backup", customer, {})
    kill_at(monkeypatch, step)
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
