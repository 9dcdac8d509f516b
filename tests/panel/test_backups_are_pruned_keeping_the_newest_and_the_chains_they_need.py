"""Pruning keeps a server's newest backups (its policy's retention) and every backup a kept one builds on
(an incremental needs its chain back to its full backup), and what a backup being taken or restored reads;
the rest, and failed backups older than a day, are marked to go and no longer listed. The removal job
deletes their files from the target, children before parents, then the rows; a target that fails leaves
the row for the next run. A deleted server's backups go after the grace period."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from hypervisor import backup_targets
from hypervisor.models import BackupTarget
from panel.backups import pruning
from panel.models import Backup, BackupPolicy, Operation
from tests import factories
from tests.panel.backup_policy_support import give_backup_target, make_backup

pytestmark = pytest.mark.django_db

FULL, INCREMENTAL = Backup.Kind.FULL, Backup.Kind.INCREMENTAL


@pytest.fixture
def server(customer, catalog):
    give_backup_target(catalog["region"])
    server = factories.make_server(customer, catalog)
    BackupPolicy.objects.create(server=server, enabled=True, retention=2)
    return server


def going(server) -> set[int]:
    return set(Backup.objects.filter(server=server, delete_after__isnull=False).values_list("pk", flat=True))


def test_the_newest_are_kept_with_the_chain_they_build_on(api, customer, server):
    now = timezone.now()
    day = timedelta(days=1)
    old_full = make_backup(server, now - 9 * day)
    old_incremental = make_backup(server, now - 8 * day, kind=INCREMENTAL, parent=old_full)
    full = make_backup(server, now - 5 * day)
    first = make_backup(server, now - 4 * day, kind=INCREMENTAL, parent=full)
    second = make_backup(server, now - 3 * day, kind=INCREMENTAL, parent=first)
    third = make_backup(server, now - 2 * day, kind=INCREMENTAL, parent=second)
    failed_old = make_backup(server, now - 2 * day, status=Backup.Status.FAILED)
    failed_new = make_backup(server, now - timedelta(hours=3), status=Backup.Status.FAILED)

    # Keeping 2 (third, second): their chain back to `full` stays; the older chain and the old failure go.
    assert pruning.prune(server, now) == 3
    assert going(server) == {old_full.pk, old_incremental.pk, failed_old.pk}
    listed = api(customer).get(f"/api/v1/servers/{server.pk}/backups/").json()["results"]
    assert [row["id"] for row in listed] == [failed_new.pk, third.pk, second.pk, first.pk, full.pk]
    # Again: nothing more.
    assert pruning.prune(server, now) == 0

    # A new full backup and keeping 1: the whole older chain can go.
    newest = make_backup(server, now - timedelta(hours=1))
    BackupPolicy.objects.filter(pk=server.pk).update(retention=1)
    assert pruning.prune(server, now) == 4
    assert going(server) == {
        old_full.pk, old_incremental.pk, failed_old.pk, full.pk, first.pk, second.pk, third.pk,
    }  # fmt: skip
    assert newest.pk not in going(server)


def test_what_a_backup_being_taken_or_restored_reads_is_kept(customer, server):
    now = timezone.now()
    full = make_backup(server, now - timedelta(days=5))
    other = make_backup(server, now - timedelta(days=4))
    make_backup(server, now - timedelta(days=3))
    make_backup(server, now - timedelta(days=2))
    # An incremental being taken on top of `full`, and a restore of `other` still running.
    make_backup(
        server, now - timedelta(minutes=5), status=Backup.Status.RUNNING, kind=INCREMENTAL, parent=full
    )
    Operation.objects.create(server=server, type="restore_backup", params={"backup": other.pk})
    assert pruning.prune(server, now) == 0
    assert going(server) == set()


def test_due_backups_are_removed_from_the_target_children_first(customer, server):
    target = server.region.backup_target
    now = timezone.now()
    full = make_backup(server, now - timedelta(days=5))
    incremental = make_backup(server, now - timedelta(days=4), kind=INCREMENTAL, parent=full)
    failed = make_backup(server, now - timedelta(days=3), status=Backup.Status.FAILED)  # no file
    later = make_backup(server, now - timedelta(days=2))
    for backup in (full, incremental, later):
        backup_targets.store(target, backup.location, [b"backup bytes"])
        assert backup_targets.exists(target, backup.location)
    Backup.objects.filter(pk__in=[full.pk, incremental.pk, failed.pk]).update(delete_after=now)
    Backup.objects.filter(pk=later.pk).update(delete_after=now + timedelta(days=1))  # not yet

    assert pruning.delete_due(now) == 3
    assert list(Backup.objects.values_list("pk", flat=True)) == [later.pk]
    assert not backup_targets.exists(target, full.location)
    assert not backup_targets.exists(target, incremental.location)
    assert backup_targets.exists(target, later.location)
    # The next day it goes too.
    assert pruning.delete_due(now + timedelta(days=1)) == 1
    assert not Backup.objects.exists() and not backup_targets.exists(target, later.location)


def test_a_parent_waits_for_its_children_and_a_failing_target_keeps_the_row(customer, server):
    now = timezone.now()
    full = make_backup(server, now - timedelta(days=5))
    make_backup(server, now - timedelta(days=4), kind=INCREMENTAL, parent=full)
    Backup.objects.filter(pk=full.pk).update(delete_after=now)
    assert pruning.delete_due(now) == 0  # its incremental is still there
    assert Backup.objects.filter(pk=full.pk).exists()

    # A backup server that does not answer: the row stays for the next run.
    unreachable = BackupTarget.objects.create(
        name="down", kind=BackupTarget.Kind.SSH, ssh_address="backup@127.0.0.1", ssh_port=1, directory="/srv"
    )
    lost = make_backup(server, now - timedelta(days=3), target=unreachable, delete_after=now)
    assert pruning.delete_due(now) == 0
    assert Backup.objects.filter(pk=lost.pk).exists()


def test_a_deleted_servers_backups_go_after_the_grace_period(customer, server, settings):
    settings.BACKUP_DELETE_GRACE_DAYS = 7
    now = timezone.now()
    backup = make_backup(server, now - timedelta(days=1))
    server.status = "deleted"
    server.save(update_fields=["status"])
    assert pruning.prune_all(now) == 1  # a server deleted before the hook ran is caught up with
    backup.refresh_from_db()
    assert backup.delete_after == now + timedelta(days=7)
    policy = BackupPolicy.objects.get(pk=server.pk)
    assert (policy.enabled, policy.next_run_at) == (False, None)
    assert pruning.delete_due(now + timedelta(days=6)) == 0
    assert pruning.delete_due(now + timedelta(days=7)) == 1

    settings.BACKUP_DELETE_GRACE_DAYS = 0
    other = make_backup(server, now)
    assert pruning.on_server_deleted(server, now) == 1
    other.refresh_from_db()
    assert other.delete_after == now
