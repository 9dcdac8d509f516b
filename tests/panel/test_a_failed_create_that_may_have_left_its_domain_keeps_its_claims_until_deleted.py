"""A failed create gives back its capacity, its address and its charge only when nothing of it can be left
on the host. When its domain may still exist (the host went down, or the destroy failed), the server stays
in error holding all three, staff are told cleanup is pending, and deleting the server destroys the domain,
frees them and takes the charge back, once. The reaper does the same for a create a worker began."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billing import ledger, subscriptions
from billing.models import Invoice, LedgerEntry, Subscription
from hypervisor import connection, driver
from hypervisor.models import Allocation, Host, IPAddress
from panel.models import Operation, Server
from panel.servers import actions, guest, leases, operations
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def pooled(catalog):
    factories.make_pool(catalog["region"])
    return catalog


@pytest.fixture
def conn(pooled):
    """The simulated host's connection; domains and volumes the test leaves are removed afterwards."""
    conn = connection.connection(pooled["host"].uri)
    before = {domain.UUIDString() for domain in conn.listAllDomains()}
    pool = conn.storagePoolLookupByName(pooled["host"].storage_pool)
    volumes_before = set(pool.listVolumes())
    yield conn
    for domain in conn.listAllDomains():
        if domain.UUIDString() not in before:
            if domain.isActive():
                domain.destroy()
            domain.undefine()
    connection.when_pool_idle(lambda: pool.refresh(0))  # other tests' volume jobs
    for name in set(pool.listVolumes()) - volumes_before:
        pool.storageVolLookupByName(name).delete(0)


def order(customer, catalog) -> tuple[Server, Operation]:
    server = actions.order_server(
        customer, name="web1", plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
    )
    return server, Operation.objects.get(server=server, type=Operation.Type.CREATE)


def a_worker_defines_the_domain_and_dies(operation: Operation) -> None:
    """What a worker killed right after `create:defined` leaves: the operation running with the mark the
    create sets before defining the domain, the disk, the seed and a running domain on the host."""
    operation = operations.begin(str(operation.pk))
    server = operation.server
    with leases.heartbeat(operation):  # the dying worker's run (its process is gone after it)
        Operation.objects.filter(pk=operation.pk).update(params={"defining": True})
        base_path, boot = guest.image_files(server, owner=str(operation.id))
        request = guest.domain_request(server, boot)
        disk = driver.create_disk(server.host, request, base_path)
        seed = driver.write_seed(server.host, request, guest.seed_iso(server), replace=True)
        driver.define_domain(server.host, request, disk, seed)
        driver.start(server.host, server.id)
    # The worker is gone: its lease runs out and the operation is sent to another worker.
    Operation.objects.filter(pk=operation.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def has_domain(conn, server: Server) -> bool:
    return str(server.id) in {domain.UUIDString() for domain in conn.listAllDomains()}


def holds(server: Server) -> tuple[bool, bool]:
    return (
        Allocation.objects.filter(consumer_uuid=server.id).exists(),
        IPAddress.objects.filter(consumer_uuid=server.id).exists(),
    )


def assert_kept_for_the_delete(server: Server, customer) -> None:
    server.refresh_from_db()
    assert (server.status, server.task) == ("error", None)
    assert "Cleanup is pending" in server.status_detail
    assert "Cleanup" not in server.status_reason
    assert holds(server) == (True, True)  # the address cannot go to another customer
    assert Subscription.objects.get(reference=str(server.id)).status == Subscription.Status.ACTIVE
    assert Invoice.objects.get(account=customer).status == Invoice.Status.OPEN


def delete_and_check_it_frees_everything_once(server: Server, customer, conn) -> None:
    delete = actions.delete_server(server, customer)
    operations.execute(str(delete.pk))

    server.refresh_from_db()
    assert (server.status, server.task) == ("deleted", None)
    assert not has_domain(conn, server)
    assert holds(server) == (False, False)
    assert Subscription.objects.get(reference=str(server.id)).status == Subscription.Status.ENDED
    assert Invoice.objects.get(account=customer).status == Invoice.Status.VOID
    assert ledger.balance(customer) == 0
    # Handling the delete again (a redelivered task) takes nothing back twice.
    Operation.objects.filter(pk=delete.pk).update(status=Operation.Status.RUNNING)
    operations.execute(str(delete.pk))
    assert not subscriptions.cancel_unused_subscription(str(server.id))
    assert ledger.balance(customer) == 0
    assert LedgerEntry.objects.filter(account=customer, kind=LedgerEntry.Kind.CREDIT).count() == 1  # the void


def test_a_create_failing_while_its_host_is_down_keeps_what_it_holds_until_deleted(
    customer, pooled, conn, settings
):
    settings.OPERATION_MAX_ATTEMPTS = 2
    server, create = order(customer, pooled)
    a_worker_defines_the_domain_and_dies(create)
    Host.objects.filter(pk=pooled["host"].pk).update(state=Host.State.DOWN)

    operations.execute(str(create.pk))  # the redelivered create finds the host down: the destroy is skipped

    create.refresh_from_db()
    assert create.status == Operation.Status.FAILED
    assert has_domain(conn, server)
    assert_kept_for_the_delete(server, customer)

    Host.objects.filter(pk=pooled["host"].pk).update(state=Host.State.READY)
    delete_and_check_it_frees_everything_once(server, customer, conn)


def test_a_create_whose_cleanup_fails_keeps_what_it_holds_until_deleted(customer, pooled, conn, settings):
    settings.OPERATION_MAX_ATTEMPTS = 2
    server, create = order(customer, pooled)
    a_worker_defines_the_domain_and_dies(create)
    uri = pooled["host"].uri
    Host.objects.filter(pk=pooled["host"].pk).update(uri="qemu+tcp://127.0.0.1:1/system")  # refused

    operations.execute(str(create.pk))  # the last attempt fails, and so does the destroy

    assert has_domain(conn, server)
    assert_kept_for_the_delete(server, customer)

    Host.objects.filter(pk=pooled["host"].pk).update(uri=uri)
    delete_and_check_it_frees_everything_once(server, customer, conn)


def test_a_create_failing_before_it_defined_a_domain_gives_everything_back(customer, pooled, conn):
    server, create = order(customer, pooled)
    Host.objects.filter(pk=pooled["host"].pk).update(state=Host.State.DOWN)

    operations.execute(str(create.pk))  # fails fast on the down host: nothing was made there

    server.refresh_from_db()
    assert (server.status, server.task) == ("error", None)
    assert "Cleanup is pending" not in server.status_detail
    assert holds(server) == (False, False)
    assert Subscription.objects.get(reference=str(server.id)).status == Subscription.Status.ENDED
    assert Invoice.objects.get(account=customer).status == Invoice.Status.VOID

    Host.objects.filter(pk=pooled["host"].pk).update(state=Host.State.READY)
    delete = actions.delete_server(server, customer)
    operations.execute(str(delete.pk))
    server.refresh_from_db()
    assert server.status == "deleted"
    assert ledger.balance(customer) == 0
    assert LedgerEntry.objects.filter(account=customer, kind=LedgerEntry.Kind.CREDIT).count() == 1


def test_the_reaper_keeps_what_a_begun_create_holds_until_the_server_is_deleted(customer, pooled, conn):
    server, create = order(customer, pooled)
    a_worker_defines_the_domain_and_dies(create)
    Operation.objects.filter(pk=create.pk).update(deadline=timezone.now() - timedelta(seconds=1))

    assert operations.reap_stuck_operations() == 1

    assert has_domain(conn, server)
    assert_kept_for_the_delete(server, customer)
    delete_and_check_it_frees_everything_once(server, customer, conn)


def test_the_reaper_gives_back_what_a_create_no_worker_began_holds(customer, pooled, conn):
    server, create = order(customer, pooled)
    Operation.objects.filter(pk=create.pk).update(deadline=timezone.now() - timedelta(seconds=1))

    assert operations.reap_stuck_operations() == 1

    server.refresh_from_db()
    assert (server.status, server.task) == ("error", None)
    assert holds(server) == (False, False)
    assert Invoice.objects.get(account=customer).status == Invoice.Status.VOID
    operations.execute(str(create.pk))  # delivered late: it does nothing
    assert not has_domain(conn, server)


def test_deleting_a_server_that_ran_ends_its_billing_without_taking_the_charge_back(customer, pooled, conn):
    server = factories.make_real_server(
        customer, plan=pooled["plan"], image=pooled["image"], region=pooled["region"]
    )
    delete = actions.delete_server(server, customer)
    operations.execute(str(delete.pk))

    assert Subscription.objects.get(reference=str(server.id)).status == Subscription.Status.ENDED
    assert Invoice.objects.get(account=customer).status == Invoice.Status.OPEN
    assert ledger.balance(customer) < 0
