"""A server that moves holds a claim on its host and one on the host it goes to: the allocation audit does
not report that while its migration is open, and reports a second claim that outlives it."""

from __future__ import annotations

import pytest

from hypervisor.models import Allocation
from panel.infrastructure import allocation_audit as audit
from panel.models import Notice, Operation
from tests import factories
from tests.panel.migration_support import MIGRATE, held, source_uri, target_uri, two_hosts_and_a_server

pytestmark = pytest.mark.django_db


def open_notices() -> dict[str, str]:
    return dict(
        Notice.objects.filter(key__startswith=audit.PREFIX, resolved_at__isnull=True).values_list(
            "key", "message"
        )
    )


def test_a_second_claim_is_drift_only_once_the_migration_has_ended(api, admin_user, customer, tmp_path):
    with factories.TidySimulatedHost(source_uri(tmp_path)), factories.TidySimulatedHost(target_uri(tmp_path)):
        world = two_hosts_and_a_server(customer, tmp_path)
        assert audit.audit_allocations() == []
        response = api(admin_user).post(
            MIGRATE.format(world.server.pk), {"host": world.target.pk}, format="json"
        )
        assert response.status_code == 202
    assert held(world.server) == {"source": (1, 256, 1), "target": (1, 256, 1)}
    assert audit.audit_allocations() == []
    assert open_notices() == {}

    # Closed without its claim given back (what a bug would leave): now it is drift, naming both hosts.
    Operation.objects.filter(pk=response.json()["id"]).update(status=Operation.Status.FAILED)
    [message] = audit.audit_allocations()
    assert "more than one host" in message and "source" in message and "target" in message
    assert set(open_notices()) == {f"{audit.PREFIX}{world.server.pk}"}

    Allocation.objects.filter(consumer_uuid=world.server.pk, host=world.target).delete()
    assert audit.audit_allocations() == []
    assert open_notices() == {}
