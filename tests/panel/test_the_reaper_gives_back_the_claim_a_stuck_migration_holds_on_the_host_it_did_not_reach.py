"""The reaper fails a migration past its deadline and gives back the claim on the host the server did not
reach: the target's when no worker began it or the domain is still on the source (the target's leftovers
removed), the source's when libvirt had switched the domain over to the target before the worker was lost
(the server is then recorded on the target)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from panel.models import Firewall, Notice, Operation
from panel.servers import migration, operations
from tests import factories
from tests.panel.migration_support import MIGRATE, held, source_uri, target_uri, two_hosts_and_a_server, used

pytestmark = pytest.mark.django_db


def stuck_migration(api, admin_user, world, began: bool) -> Operation:
    response = api(admin_user).post(MIGRATE.format(world.server.pk), {"host": world.target.pk}, format="json")
    assert response.status_code == 202, response.json()
    past = timezone.now() - timedelta(seconds=1)
    changes = {"deadline": past}
    if began:  # a worker began it and was lost: its lease ran out
        changes.update(
            status=Operation.Status.RUNNING, started_at=past, lease_owner="", lease_expires_at=past
        )
    Operation.objects.filter(pk=response.json()["id"]).update(**changes)
    return Operation.objects.get(pk=response.json()["id"])


@pytest.fixture
def hosts(tmp_path):
    with (
        factories.TidySimulatedHost(source_uri(tmp_path)) as source_conn,
        factories.TidySimulatedHost(target_uri(tmp_path)) as target_conn,
    ):
        yield source_conn, target_conn


def test_a_migration_no_worker_began_gives_back_the_targets_claim(api, admin_user, customer, tmp_path, hosts):
    world = two_hosts_and_a_server(customer, tmp_path)
    operation = stuck_migration(api, admin_user, world, began=False)
    assert held(world.server) == {"source": (1, 256, 1), "target": (1, 256, 1)}

    assert operations.reap_stuck_operations() == 1
    operation.refresh_from_db()
    world.server.refresh_from_db()
    assert operation.status == Operation.Status.FAILED
    assert (world.server.status, world.server.task, world.server.host_id) == (
        "running",
        None,
        world.source.pk,
    )
    assert held(world.server) == {"source": (1, 256, 1)}
    assert used(world.target) == (0, 0, 0)
    assert operations.reap_stuck_operations() == 0


def test_a_lost_migration_whose_domain_stayed_on_the_source_gives_back_the_targets_claim(
    api, admin_user, customer, tmp_path, hosts
):
    source_conn, target_conn = hosts
    world = two_hosts_and_a_server(customer, tmp_path)
    operation = stuck_migration(api, admin_user, world, began=True)
    # What its worker had done before it was lost: the target prepared (the seed written there).
    request = migration.target_request(world.server, world.target)
    migration.moves.prepare_target(world.source, world.target, request, b"seed")
    assert request.seed_volume_name in target_conn.storagePoolLookupByName("default").listVolumes()

    assert operations.reap_stuck_operations() == 1
    operation.refresh_from_db()
    world.server.refresh_from_db()
    assert operation.status == Operation.Status.FAILED
    assert (world.server.task, world.server.host_id) == (None, world.source.pk)
    assert held(world.server) == {"source": (1, 256, 1)}
    assert request.seed_volume_name not in target_conn.storagePoolLookupByName("default").listVolumes()
    assert source_conn.lookupByUUIDString(str(world.server.id)).isActive()


def test_a_lost_migration_whose_domain_reached_the_target_is_recorded_there(
    api, admin_user, customer, tmp_path, hosts
):
    source_conn, target_conn = hosts
    world = two_hosts_and_a_server(customer, tmp_path)
    row = Firewall.objects.filter(pk=world.server.pk).first()
    firewall_version = row.version if row else Firewall._meta.get_field("version").default
    operation = stuck_migration(api, admin_user, world, began=True)
    # libvirt switched the domain over before the worker was lost: it runs on the target only.
    domain = source_conn.lookupByUUIDString(str(world.server.id))
    xml = domain.XMLDesc(0)
    domain.destroy()
    domain.undefine()
    target_conn.defineXML(xml).create()

    assert operations.reap_stuck_operations() == 1
    operation.refresh_from_db()
    world.server.refresh_from_db()
    assert operation.status == Operation.Status.FAILED
    assert (world.server.status, world.server.task, world.server.host_id) == (
        "running",
        None,
        world.target.pk,
    )
    assert held(world.server) == {"target": (1, 256, 1)}
    assert used(world.source) == (0, 0, 0)
    # What the server left on the source goes.
    assert f"{world.server.id}.qcow2" not in source_conn.storagePoolLookupByName("default").listVolumes()
    assert Notice.objects.get(key=migration.leftovers_key(world.server)).resolved_at is not None
    # As the worker's switch-over: the target gets the firewall as it is now.
    assert Firewall.objects.get(pk=world.server.pk).version == firewall_version + 1
