"""Operations end cleanly whatever happens: a failed create removes what it made and frees its capacity,
a redelivered create finishes instead of repeating, and the reaper fails operations past their deadline
(tests/panel/test_operations_hold_leases_and_resume_when_their_worker_is_gone.py covers sending again)."""

from __future__ import annotations

from datetime import timedelta

import libvirt
import pytest
from django.utils import timezone

from hypervisor import connection
from hypervisor.models import Allocation, Host
from panel.models import Operation, Server
from panel.servers import actions, operations

pytestmark = pytest.mark.django_db


@pytest.fixture
def conn(catalog):
    """The simulated host's libvirt connection (the same one the driver uses); new domains and volumes are
    removed after the test, since the simulated host outlives it."""
    conn = connection.connection(catalog["host"].uri)
    before = {domain.UUIDString() for domain in conn.listAllDomains()}
    pool = conn.storagePoolLookupByName(catalog["host"].storage_pool)
    volumes_before = set(pool.listVolumes())
    yield conn
    for domain in conn.listAllDomains():
        if domain.UUIDString() in before:
            continue
        if domain.isActive():
            domain.destroy()
        if domain.isPersistent():
            domain.undefine()
    for name in set(pool.listVolumes()) - volumes_before:
        pool.storageVolLookupByName(name).delete(0)


def order(customer, catalog, name: str = "web1") -> tuple[Server, Operation]:
    server = actions.order_server(
        customer, name=name, plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
    )
    return server, Operation.objects.get(server=server, type=Operation.Type.CREATE)


def has_domain(conn: libvirt.virConnect, server: Server) -> bool:
    return str(server.id) in {domain.UUIDString() for domain in conn.listAllDomains()}


def volumes(conn: libvirt.virConnect) -> set[str]:
    pool = conn.storagePoolLookupByName("default")
    pool.refresh(0)
    return set(pool.listVolumes())


# A create that fails


def test_a_create_that_fails_for_a_non_transient_reason_ends_in_error_and_frees_capacity(
    customer, catalog, conn
):
    server, operation = order(customer, catalog)
    assert Allocation.objects.filter(consumer_uuid=server.id).exists()
    Host.objects.filter(pk=catalog["host"].pk).update(storage_pool="missing-pool")

    operations.execute(str(operation.pk))  # does not raise: the failure is recorded

    server.refresh_from_db()
    operation.refresh_from_db()
    assert server.status == "error"
    assert server.task is None
    assert "no storage pool named missing-pool" in server.status_detail  # staff see the error itself
    assert "missing-pool" not in server.status_reason  # the customer a plain message
    assert operation.status == "failed"
    assert operation.detail == "no storage pool named missing-pool"
    assert operation.attempts == 1
    assert operation.finished_at is not None
    assert not has_domain(conn, server)
    assert not Allocation.objects.filter(consumer_uuid=server.id).exists()
    assert f"{server.id}.qcow2" not in volumes(conn)


def test_a_create_that_fails_after_making_the_disk_removes_the_disk(customer, catalog, conn):
    server, operation = order(customer, catalog)
    # The disk is made in the storage pool, then defining the domain fails: its network is missing.
    Host.objects.filter(pk=catalog["host"].pk).update(network="missing-net")

    operations.execute(str(operation.pk))

    server.refresh_from_db()
    operation.refresh_from_db()
    assert (server.status, server.task, operation.status) == ("error", None, "failed")
    assert operation.detail == "no network named missing-net"
    assert not has_domain(conn, server)
    assert f"{server.id}.qcow2" not in volumes(conn)
    assert not Allocation.objects.filter(consumer_uuid=server.id).exists()


def test_a_failed_create_frees_the_room_for_another_order(customer, catalog, conn):
    Host.objects.filter(pk=catalog["host"].pk).update(memory_mib_total=512 + catalog["plan"].memory_mib)
    server, operation = order(customer, catalog)
    with pytest.raises(actions.OutOfCapacity):
        order(customer, catalog, "second")
    Host.objects.filter(pk=catalog["host"].pk).update(storage_pool="missing-pool")
    operations.execute(str(operation.pk))
    Host.objects.filter(pk=catalog["host"].pk).update(storage_pool="default")

    retry, _operation = order(customer, catalog, "second")
    assert retry.host_id == catalog["host"].pk


def test_a_server_in_error_after_a_failed_create_can_be_deleted(customer, catalog, conn):
    server, operation = order(customer, catalog)
    Host.objects.filter(pk=catalog["host"].pk).update(storage_pool="missing-pool")
    operations.execute(str(operation.pk))
    Host.objects.filter(pk=catalog["host"].pk).update(storage_pool="default")
    server.refresh_from_db()

    delete = actions.delete_server(server, customer)
    operations.execute(str(delete.pk))

    server.refresh_from_db()
    delete.refresh_from_db()
    assert (server.status, server.task, delete.status) == ("deleted", None, "succeeded")


def test_a_transient_error_asks_for_a_retry_and_the_last_attempt_fails_cleanly(
    customer, catalog, conn, settings
):
    settings.OPERATION_MAX_ATTEMPTS = 2
    server, operation = order(customer, catalog)
    Host.objects.filter(pk=catalog["host"].pk).update(uri="qemu+tcp://127.0.0.1:1/system")  # refused

    with pytest.raises(operations.RetryLater) as retry:
        operations.execute(str(operation.pk))

    assert retry.value.countdown == 2
    assert "connect" in retry.value.reason
    operation.refresh_from_db()
    server.refresh_from_db()
    assert (operation.status, operation.attempts) == ("running", 1)
    assert (server.status, server.task) == ("provisioning", "create")
    assert Allocation.objects.filter(consumer_uuid=server.id).exists()

    operations.execute(str(operation.pk))  # the last attempt

    operation.refresh_from_db()
    server.refresh_from_db()
    assert (operation.status, operation.attempts) == ("failed", 2)
    assert "connect" in operation.detail
    assert (server.status, server.task) == ("error", None)
    assert not Allocation.objects.filter(consumer_uuid=server.id).exists()


# A create delivered twice


def test_a_create_executed_twice_leaves_one_domain_and_stays_running(customer, catalog, conn):
    domains_before = len(conn.listAllDomains())
    volumes_before = volumes(conn)
    server, operation = order(customer, catalog)

    operations.execute(str(operation.pk))
    # The broker redelivers the task, as after a worker that died before acknowledging it.
    Operation.objects.filter(pk=operation.pk).update(status=Operation.Status.RUNNING)
    operations.execute(str(operation.pk))

    server.refresh_from_db()
    operation.refresh_from_db()
    assert (server.status, server.task, server.power_state) == ("running", None, "running")
    assert (operation.status, operation.attempts) == ("succeeded", 2)
    assert len(conn.listAllDomains()) == domains_before + 1
    assert conn.lookupByUUIDString(str(server.id)).isActive()
    assert volumes(conn) - volumes_before == {f"{server.id}.qcow2", f"{server.id}-seed.iso"}
    assert Allocation.objects.filter(consumer_uuid=server.id).count() == 1


def test_executing_a_finished_operation_again_does_nothing(customer, catalog, conn):
    server, operation = order(customer, catalog)
    operations.execute(str(operation.pk))
    power_off = actions.request_action(server, Operation.Type.POWER_OFF, customer)
    operations.execute(str(power_off.pk))
    assert not conn.lookupByUUIDString(str(server.id)).isActive()

    operations.execute(str(operation.pk))  # a late duplicate of the create

    operation.refresh_from_db()
    server.refresh_from_db()
    assert operation.attempts == 1
    assert (server.status, server.power_state) == ("stopped", "shutoff")
    assert not conn.lookupByUUIDString(str(server.id)).isActive()


# The reaper


def test_the_reaper_fails_an_operation_past_its_deadline_and_frees_the_server(customer, catalog, conn):
    server, create = order(customer, catalog)
    operations.execute(str(create.pk))
    stuck = actions.request_action(server, Operation.Type.POWER_OFF, customer)
    Operation.objects.filter(pk=stuck.pk).update(
        status=Operation.Status.RUNNING, deadline=timezone.now() - timedelta(seconds=1)
    )
    other, other_create = order(customer, catalog, "other")
    operations.execute(str(other_create.pk))
    in_time = actions.request_action(other, Operation.Type.REBOOT, customer)

    assert operations.reap_stuck_operations() == 1

    stuck.refresh_from_db()
    server.refresh_from_db()
    assert stuck.status == "failed"
    assert "deadline" in stuck.error
    assert stuck.finished_at is not None
    assert server.task is None
    assert server.status == "running"  # a stuck power action says nothing about the guest
    in_time.refresh_from_db()
    other.refresh_from_db()
    assert (in_time.status, other.task) == ("pending", "reboot")

    # The freed server takes a new action; the reaped operation, if it is delivered late, does nothing.
    actions.request_action(server, Operation.Type.REBOOT, customer)
    operations.execute(str(stuck.pk))
    assert conn.lookupByUUIDString(str(server.id)).isActive()
    stuck.refresh_from_db()
    assert stuck.status == "failed"


def test_the_reaper_puts_a_stuck_create_in_error(customer, catalog, conn):
    server, create = order(customer, catalog)
    Operation.objects.filter(pk=create.pk).update(deadline=timezone.now() - timedelta(minutes=1))

    assert operations.reap_stuck_operations() == 1

    server.refresh_from_db()
    create.refresh_from_db()
    assert (server.status, server.task) == ("error", None)
    assert "deadline" in server.status_detail
    assert create.status == "failed"
    assert operations.reap_stuck_operations() == 0
