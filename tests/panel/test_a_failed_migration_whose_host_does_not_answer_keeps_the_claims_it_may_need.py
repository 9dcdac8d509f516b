"""A migration given up while one of its hosts does not answer asks the one that does. The source down and
the target running the domain: the switch-over is recorded (the source's claim goes; what it left there
stays in an open Notice). The target down and the source not running the domain: nobody can tell where it
is, so both claims stay and the server goes to error with a staff detail naming both hosts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from hypervisor.models import Host
from panel.models import Notice, Operation
from panel.servers import migration, operations
from tests import factories
from tests.panel.migration_support import MIGRATE, held, source_uri, target_uri, two_hosts_and_a_server

pytestmark = pytest.mark.django_db


def lost_migration(api, admin_user, world) -> Operation:
    response = api(admin_user).post(MIGRATE.format(world.server.pk), {"host": world.target.pk}, format="json")
    assert response.status_code == 202, response.json()
    past = timezone.now() - timedelta(seconds=1)
    Operation.objects.filter(pk=response.json()["id"]).update(
        deadline=past, status=Operation.Status.RUNNING, started_at=past, lease_owner="", lease_expires_at=past
    )
    return Operation.objects.get(pk=response.json()["id"])


def test_the_source_down_and_the_target_running_it_records_the_switch_over(
    api, admin_user, customer, tmp_path
):
    with (
        factories.TidySimulatedHost(source_uri(tmp_path)) as source_conn,
        factories.TidySimulatedHost(target_uri(tmp_path)) as target_conn,
    ):
        world = two_hosts_and_a_server(customer, tmp_path)
        operation = lost_migration(api, admin_user, world)
        domain = source_conn.lookupByUUIDString(str(world.server.id))
        target_conn.defineXML(domain.XMLDesc(0)).create()
        domain.destroy()
        Host.objects.filter(pk=world.source.pk).update(state=Host.State.DOWN)

        assert operations.reap_stuck_operations() == 1
        operation.refresh_from_db()
        world.server.refresh_from_db()
        assert operation.status == Operation.Status.FAILED
        assert (world.server.task, world.server.host_id, world.server.power_state) == (
            None,
            world.target.pk,
            "running",
        )
        assert held(world.server) == {"target": (1, 256, 1)}
        notice = Notice.objects.get(key=migration.leftovers_key(world.server))
        assert notice.resolved_at is None and "source" in notice.message


def test_the_target_down_and_the_source_not_running_it_keeps_both_claims(api, admin_user, customer, tmp_path):
    with (
        factories.TidySimulatedHost(source_uri(tmp_path)) as source_conn,
        factories.TidySimulatedHost(target_uri(tmp_path)),
    ):
        world = two_hosts_and_a_server(customer, tmp_path)
        operation = lost_migration(api, admin_user, world)
        source_conn.lookupByUUIDString(str(world.server.id)).destroy()  # may run on the target now
        Host.objects.filter(pk=world.target.pk).update(state=Host.State.DOWN)

        assert operations.reap_stuck_operations() == 1
        operation.refresh_from_db()
        world.server.refresh_from_db()
        assert operation.status == Operation.Status.FAILED
        assert (world.server.status, world.server.task, world.server.host_id) == (
            "error",
            None,
            world.source.pk,
        )
        assert "source" in world.server.status_detail and "target" in world.server.status_detail
        assert held(world.server) == {"source": (1, 256, 1), "target": (1, 256, 1)}
