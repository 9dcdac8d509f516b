"""A worker that dies after libvirt moved the domain but before the panel recorded it leaves the operation
open; its redelivery looks first, finds the domain on the target, and does only the rest: the server is
recorded on the target (its status as the domain is), the source's claim released, the usage counters begin
again from zero there, the network filter is sent again (to the new host) and what the server left on the
source is removed. A delivery after that changes nothing."""

from __future__ import annotations

import pytest
from django.utils import timezone

from panel.models import Firewall, MeterState, Notice, Operation
from panel.servers import migration
from tests import factories
from tests.panel.migration_support import MIGRATE, held, source_uri, target_uri, two_hosts_and_a_server, used

pytestmark = pytest.mark.django_db


def test_the_redelivery_records_the_switch_over_once(api, admin_user, customer, tmp_path):
    with (
        factories.TidySimulatedHost(source_uri(tmp_path)) as source_conn,
        factories.TidySimulatedHost(target_uri(tmp_path)) as target_conn,
    ):
        world = two_hosts_and_a_server(customer, tmp_path)
        server = world.server
        MeterState.objects.create(
            server=server, domain_id=7, rx_bytes=10**9, tx_bytes=10**8, read_at=timezone.now()
        )
        # A server without a firewall row has its first version (the row's default) on its host.
        row = Firewall.objects.filter(pk=server.pk).first()
        firewall_version = row.version if row else Firewall._meta.get_field("version").default
        response = api(admin_user).post(MIGRATE.format(server.pk), {"host": world.target.pk}, format="json")
        assert response.status_code == 202, response.json()
        operation = Operation.objects.get(pk=response.json()["id"])

        # What the lost worker had got libvirt to do: the domain runs on the target only.
        domain = source_conn.lookupByUUIDString(str(server.id))
        xml = domain.XMLDesc(0)
        domain.destroy()
        domain.undefine()
        target_conn.defineXML(xml).create()

        operation = factories.run_operation(operation)
        assert operation.status == Operation.Status.SUCCEEDED, (operation.error, operation.detail)
        server.refresh_from_db()
        assert (server.status, server.task, server.host_id, server.power_state) == (
            "running",
            None,
            world.target.pk,
            "running",
        )
        assert held(server) == {"target": (1, 256, 1)}
        assert used(world.source) == (0, 0, 0)
        meter = MeterState.objects.get(server=server)
        assert (meter.domain_id, meter.rx_bytes, meter.tx_bytes) == (-1, 0, 0)
        assert Firewall.objects.get(pk=server.pk).version == firewall_version + 1
        assert f"{server.id}.qcow2" not in source_conn.storagePoolLookupByName("default").listVolumes()
        assert target_conn.lookupByUUIDString(str(server.id)).isActive()
        # The durable to-do the switch-over recorded was resolved once the source's leftovers went.
        assert Notice.objects.get(key=migration.leftovers_key(server)).resolved_at is not None

        # Delivered once more: it has finished, nothing changes.
        assert factories.run_operation(operation).status == Operation.Status.SUCCEEDED
        assert held(server) == {"target": (1, 256, 1)}
        assert Firewall.objects.get(pk=server.pk).version == firewall_version + 1
