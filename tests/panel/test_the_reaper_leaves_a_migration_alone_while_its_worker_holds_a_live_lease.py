"""The reaper leaves alone a migration past its deadline while its worker still holds a live lease (it may be
preparing the target or copying a disk, with no libvirt job to see): nothing changes. Once that lease has
run out (the worker is gone) the migration is reaped: the claim on the target it did not reach goes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from panel.models import Operation
from panel.servers import operations
from tests import factories
from tests.panel.migration_support import MIGRATE, held, source_uri, target_uri, two_hosts_and_a_server

pytestmark = pytest.mark.django_db


def test_a_live_lease_keeps_the_reaper_away_and_an_expired_one_does_not(api, admin_user, customer, tmp_path):
    with factories.TidySimulatedHost(source_uri(tmp_path)), factories.TidySimulatedHost(target_uri(tmp_path)):
        world = two_hosts_and_a_server(customer, tmp_path)
        response = api(admin_user).post(
            MIGRATE.format(world.server.pk), {"host": world.target.pk}, format="json"
        )
        assert response.status_code == 202, response.json()
        past = timezone.now() - timedelta(seconds=1)
        Operation.objects.filter(pk=response.json()["id"]).update(
            deadline=past,
            status=Operation.Status.RUNNING,
            started_at=past,
            lease_owner="worker@elsewhere/boot/1",
            lease_expires_at=timezone.now() + timedelta(minutes=5),
        )
        both = {"source": (1, 256, 1), "target": (1, 256, 1)}
        assert held(world.server) == both

        assert operations.reap_stuck_operations() == 0
        operation = Operation.objects.get(pk=response.json()["id"])
        world.server.refresh_from_db()
        assert operation.status == Operation.Status.RUNNING
        assert (world.server.task, world.server.host_id) == ("migrate", world.source.pk)
        assert held(world.server) == both

        # The worker is gone: its lease ran out.
        Operation.objects.filter(pk=operation.pk).update(lease_expires_at=past)
        assert operations.reap_stuck_operations() == 1
        operation.refresh_from_db()
        world.server.refresh_from_db()
        assert operation.status == Operation.Status.FAILED
        assert (world.server.task, world.server.host_id) == (None, world.source.pk)
        assert held(world.server) == {"source": (1, 256, 1)}
