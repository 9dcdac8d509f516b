"""The beat starts the backup of each enabled policy whose slot has come (a scheduled backup, through the
backup action), and moves the policy on to its next slot first: two beats at the same moment start one
backup. A server busy with another action is tried again ten minutes later, never past its next regular
slot. Policies that are off, not due yet, or of deleted servers start nothing."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from panel.backups import policies, schedule
from panel.models import Backup, BackupPolicy, Operation, Server
from tests import factories
from tests.factories import local_time as at
from tests.panel.backup_policy_support import give_backup_target

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def jakarta(settings):
    settings.TIME_ZONE = "Asia/Jakarta"
    settings.BACKUP_HOUR = 2


@pytest.fixture
def region(catalog):
    give_backup_target(catalog["region"])
    return catalog["region"]


def enabled(customer, catalog, name: str, *, minute: int, schedule_: str = "daily", weekday: int = 0,
            next_run_at: datetime | None = None, **fields) -> Server:  # fmt: skip
    server = factories.make_server(customer, catalog, name=name, **fields)
    BackupPolicy.objects.create(
        server=server, enabled=True, schedule=schedule_, retention=7, minute=minute, weekday=weekday,
        next_run_at=next_run_at,
    )  # fmt: skip
    return server


def test_the_next_slot_is_the_servers_minute_of_the_backup_hour(customer, catalog):
    policy = BackupPolicy(minute=17, weekday=2, schedule="daily")
    assert policies.next_slot(policy, at(2026, 3, 9, 1, 0)) == at(2026, 3, 9, 2, 17)
    assert policies.next_slot(policy, at(2026, 3, 9, 2, 17)) == at(2026, 3, 10, 2, 17)  # strictly after
    policy.schedule = "weekly"  # Wednesdays (9 March 2026 is a Monday)
    assert policies.next_slot(policy, at(2026, 3, 9, 1, 0)) == at(2026, 3, 11, 2, 17)
    assert policies.next_slot(policy, at(2026, 3, 11, 2, 17)) == at(2026, 3, 18, 2, 17)


def test_a_due_policy_starts_one_scheduled_backup_and_moves_to_its_next_slot(customer, catalog, region):
    server = enabled(customer, catalog, "web1", minute=17, next_run_at=at(2026, 3, 9, 2, 17))
    later = enabled(customer, catalog, "web2", minute=40, next_run_at=at(2026, 3, 9, 2, 40))
    off = enabled(customer, catalog, "web3", minute=0, next_run_at=at(2026, 3, 9, 2, 0))
    BackupPolicy.objects.filter(pk=off.pk).update(enabled=False)

    now = at(2026, 3, 9, 2, 18)
    assert schedule.run_due_backups(now=now) == 1
    [backup] = Backup.objects.all()
    assert (backup.server_id, backup.trigger, backup.status) == (server.pk, "scheduled", "pending")
    operation = Operation.objects.get(server=server)
    assert (operation.type, operation.params["trigger"]) == ("backup", "scheduled")
    assert BackupPolicy.objects.get(pk=server.pk).next_run_at == at(2026, 3, 10, 2, 17)
    assert BackupPolicy.objects.get(pk=later.pk).next_run_at == at(2026, 3, 9, 2, 40)

    # A second beat at the same moment (or a minute later) starts nothing more.
    assert schedule.run_due_backups(now=now) == 0
    assert schedule.run_due_backups(now=now + timedelta(minutes=1)) == 0
    assert Backup.objects.count() == 1


def test_a_busy_server_is_tried_again_ten_minutes_later(customer, catalog, region):
    server = enabled(customer, catalog, "web1", minute=17, next_run_at=at(2026, 3, 9, 2, 17), task="reboot")
    assert schedule.run_due_backups(now=at(2026, 3, 9, 2, 17, 30)) == 0
    assert BackupPolicy.objects.get(pk=server.pk).next_run_at == at(2026, 3, 9, 2, 27, 30)
    assert not Backup.objects.exists()

    # Not due yet at 02:20; at 02:28 the reboot has finished and the backup starts.
    assert schedule.run_due_backups(now=at(2026, 3, 9, 2, 20)) == 0
    Server.objects.filter(pk=server.pk).update(task=None)
    assert schedule.run_due_backups(now=at(2026, 3, 9, 2, 28)) == 1
    assert BackupPolicy.objects.get(pk=server.pk).next_run_at == at(2026, 3, 10, 2, 17)


def test_a_retry_never_goes_past_the_next_regular_slot(customer, catalog, region):
    # Busy all day: the last retry lands on the next day's slot, not ten minutes after it.
    server = enabled(customer, catalog, "web1", minute=17, next_run_at=at(2026, 3, 10, 2, 10), task="reboot")
    assert schedule.run_due_backups(now=at(2026, 3, 10, 2, 10)) == 0
    assert BackupPolicy.objects.get(pk=server.pk).next_run_at == at(2026, 3, 10, 2, 17)


def test_a_deleted_servers_policy_is_turned_off(customer, catalog, region):
    server = enabled(
        customer, catalog, "web1", minute=17, next_run_at=at(2026, 3, 9, 2, 17), status=Server.Status.DELETED
    )
    assert schedule.run_due_backups(now=at(2026, 3, 9, 3)) == 0
    policy = BackupPolicy.objects.get(pk=server.pk)
    assert (policy.enabled, policy.next_run_at) == (False, None)
    assert not Backup.objects.exists()


def test_the_beat_looks_at_no_more_than_its_limit(customer, catalog, region):
    for number in range(3):
        enabled(customer, catalog, f"web{number}", minute=number, next_run_at=at(2026, 3, 9, 2, number))
    assert schedule.run_due_backups(now=at(2026, 3, 9, 3), limit=2) == 2
    assert schedule.run_due_backups(now=at(2026, 3, 9, 3), limit=2) == 1
    assert Backup.objects.filter(trigger="scheduled").count() == 3
