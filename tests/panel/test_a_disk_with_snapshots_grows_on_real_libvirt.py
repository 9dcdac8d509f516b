"""On the real libvirtd (qemu:///system): a server's disk is made as qcow2 version 3, so a resize that grows
it works while the server has an internal snapshot (version 2, libvirt's default, refuses: "Can't resize a
v2 image which has snapshots"), and the snapshot survives it."""

from __future__ import annotations

import pytest

from panel.models import Operation, Snapshot
from panel.servers import actions
from tests import factories
from tests.real_workers import volumes_of

pytestmark = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]

GIB = 1024**3


def run(operation: Operation) -> Operation:
    operation = factories.run_operation(operation)
    assert operation.status == Operation.Status.SUCCEEDED, operation.detail
    return operation


def test_a_server_with_a_snapshot_grows_its_disk(libvirtd, kvm_host, customer):
    plan = factories.make_plan(slug="grow-tiny", vcpus=1, memory_mib=128, disk_gib=1)
    bigger = factories.make_plan(slug="grow-bigger", vcpus=1, memory_mib=128, disk_gib=2)
    server = factories.make_real_server(
        customer, plan=plan, image=factories.make_image(), region=kvm_host.region, name="grow.example.com"
    )
    disk = volumes_of(libvirtd, str(server.id))[f"{server.id}.qcow2"]
    assert "<compat>1.1</compat>" in disk.XMLDesc(0)

    run(actions.snapshot_server(server, "before", customer))
    server.refresh_from_db()
    run(actions.resize_server(server, bigger, customer))

    server.refresh_from_db()
    assert (server.plan, server.disk_gib, server.status) == (bigger, 2, "running")
    disk = volumes_of(libvirtd, str(server.id))[f"{server.id}.qcow2"]
    assert disk.info()[1] == 2 * GIB
    domain = libvirtd.lookupByUUIDString(str(server.id))
    assert domain.snapshotListNames(0) == [Snapshot.objects.get(server=server).libvirt_name]
