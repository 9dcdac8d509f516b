"""A migration that fails (libvirt's test driver cannot migrate: the copy fails after the target was
prepared) leaves the server where it was, as it was (running, or stopped), with its task cleared; the
target's claim is given back and what the target got (the seed) is removed; the operation failed with a
plain message for the customer and the hypervisor's words for staff. Customers see no failure banner (it is
staff's to handle); staff do."""

from __future__ import annotations

import pytest

from panel.models import Operation, Server
from panel.servers import failures, migration
from panel.servers.descriptions import recent_operations
from tests import factories
from tests.panel.migration_support import MIGRATE, held, source_uri, target_uri, two_hosts_and_a_server, used

pytestmark = pytest.mark.django_db


def migrate(api, admin_user, world) -> Operation:
    response = api(admin_user).post(MIGRATE.format(world.server.pk), {"host": world.target.pk}, format="json")
    assert response.status_code == 202, response.json()
    return Operation.objects.get(pk=response.json()["id"])


@pytest.mark.parametrize("status", [Server.Status.RUNNING, Server.Status.STOPPED])
def test_the_server_stays_on_its_host_as_it_was(api, admin_user, customer, tmp_path, status):
    with (
        factories.TidySimulatedHost(source_uri(tmp_path)) as source_conn,
        factories.TidySimulatedHost(target_uri(tmp_path)) as target_conn,
    ):
        world = two_hosts_and_a_server(customer, tmp_path, status=status)
        server = world.server
        target_volumes = set(target_conn.storagePoolLookupByName("default").listVolumes())
        operation = factories.run_operation(migrate(api, admin_user, world))

        assert operation.status == Operation.Status.FAILED
        assert operation.error == migration.FAILED_TEXT
        assert "simulated hosts cannot migrate" in operation.detail
        assert operation.params["live"] is (status == Server.Status.RUNNING)
        server.refresh_from_db()
        assert (server.status, server.task, server.host_id) == (status, None, world.source.pk)
        assert held(server) == {"source": (1, 256, 1)}
        assert used(world.target) == (0, 0, 0)
        assert used(world.source) == (1, 256, 1)

        # The domain is where it was, as it was; the target keeps nothing of the server.
        domain = source_conn.lookupByUUIDString(str(server.id))
        assert bool(domain.isActive()) == (status == Server.Status.RUNNING)
        assert str(server.id) not in {d.UUIDString() for d in target_conn.listAllDomains()}
        assert set(target_conn.storagePoolLookupByName("default").listVolumes()) == target_volumes

    # Staff see the failure with the hypervisor's words; its owner is not asked to do anything.
    operations = recent_operations(server)
    assert failures.notice(server, operations) is None
    assert failures.notice(server, operations, for_staff=True) is not None


def test_it_can_be_migrated_again_after_a_failure(api, admin_user, customer, tmp_path):
    with factories.TidySimulatedHost(source_uri(tmp_path)), factories.TidySimulatedHost(target_uri(tmp_path)):
        world = two_hosts_and_a_server(customer, tmp_path)
        factories.run_operation(migrate(api, admin_user, world))
        again = migrate(api, admin_user, world)
        assert held(world.server) == {"source": (1, 256, 1), "target": (1, 256, 1)}
        assert factories.run_operation(again).status == Operation.Status.FAILED
        assert held(world.server) == {"source": (1, 256, 1)}
