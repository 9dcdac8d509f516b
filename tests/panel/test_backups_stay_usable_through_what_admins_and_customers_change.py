"""What admins and customers change around backups leaves them usable or removes them on purpose: a target
that holds backups keeps its place; a region's target is never a pool on a host that runs its servers; a
deleted server's backups can still be made into a new server during the grace period, and an order
accepted before the delete goes through; turning backups off lets the backups go after the grace period,
and turning them on again within it keeps them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from hypervisor.models import BackupTarget
from panel.backups import policies, pruning
from panel.infrastructure import backup_targets
from panel.models import Backup, Operation, Server
from panel.servers import actions
from tests import factories
from tests.panel.backup_policy_support import give_backup_target, make_backup

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(customer, catalog, settings):
    settings.BACKUP_DELETE_GRACE_DAYS = 7
    with factories.TidySimulatedHost(catalog["host"].uri):
        give_backup_target(catalog["region"])
        server = factories.make_real_server(
            customer, plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
        )
        policies.update_policy(server, customer, enabled=True, schedule="daily", retention=3)
        yield server


def test_a_target_holding_backups_keeps_its_place(server, admin_user):
    target = server.region.backup_target
    make_backup(server, timezone.now())
    with pytest.raises(ValidationError) as refused:
        backup_targets.update_target(target, admin_user, pool="elsewhere")
    assert refused.value.code == "holds_backups"
    target.refresh_from_db()
    assert target.pool == "vpspanel-backups"
    assert backup_targets.update_target(target, admin_user, name="renamed").name == "renamed"


def test_a_region_never_backs_up_to_a_pool_on_a_host_that_runs_its_servers(server, admin_user):
    own = BackupTarget.objects.create(name="own", kind="host_pool", host=server.host, pool="b")
    with pytest.raises(ValidationError) as refused:
        backup_targets.set_region_target(admin_user, server.region, own)
    assert refused.value.code == "own_host"
    server.region.refresh_from_db()
    assert server.region.backup_target.name != "own"


def test_a_deleted_servers_backup_makes_a_new_server_during_the_grace_period(server, customer, catalog):
    backup = make_backup(server, timezone.now())
    accepted = actions.order_server(
        customer, name="before", plan=catalog["plan"], region=server.region, backup=backup
    )
    factories.run_operation(actions.delete_server(server, customer))
    backup.refresh_from_db()
    assert backup.delete_after > timezone.now() + timedelta(days=6)

    with factories.TidySimulatedHost(catalog["host"].uri):
        # The order accepted before the delete goes through; a new one is accepted during the grace period.
        assert (
            factories.run_operation(Operation.objects.get(server=accepted, type="create")).status
            == "succeeded"
        )
        later = actions.order_server(
            customer, name="later", plan=catalog["plan"], region=server.region, backup=backup
        )
        assert (
            factories.run_operation(Operation.objects.get(server=later, type="create")).status == "succeeded"
        )

    # After it, the backup goes (its file first, then its row), and nothing is made from it any more.
    assert pruning.delete_due(timezone.now() + timedelta(days=8)) == 1
    assert not Backup.objects.filter(pk=backup.pk).exists()
    assert Server.objects.filter(name__in=["before", "later"], status="running").count() == 2


def test_turning_backups_off_lets_them_go_after_the_grace_period_unless_turned_on_again(server, customer):
    backup = make_backup(server, timezone.now())
    policies.update_policy(server, customer, enabled=False, schedule="daily", retention=3)
    backup.refresh_from_db()
    assert backup.delete_after > timezone.now()
    assert not Backup.objects.usable(timezone.now() + timedelta(days=8)).filter(pk=backup.pk).exists()

    policies.update_policy(server, customer, enabled=True, schedule="daily", retention=3)
    backup.refresh_from_db()
    assert backup.delete_after is None

    policies.update_policy(server, customer, enabled=False, schedule="daily", retention=3)
    assert pruning.delete_due(timezone.now() + timedelta(days=8)) == 1
    assert not Backup.objects.filter(server=server).exists()
