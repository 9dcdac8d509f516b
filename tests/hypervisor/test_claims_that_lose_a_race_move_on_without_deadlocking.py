"""A claim that finds its first host full moves on to the next host. Two such claims, whose candidate lists
were computed at different moments and so run in opposite orders, must not deadlock each other: each
must end in NoCapacity (the region is full), never in a database error.

Each actor below is one order's transaction (a thread with its own connection to real Postgres); the test
steers them with events and waits on pg_stat_activity until a backend is blocked on a row lock.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from django.db import connection as db_connection
from django.db import transaction

from hypervisor import services
from hypervisor.models import Allocation
from hypervisor.services import NoCapacity, Resources
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)
GIB_MIB = 1024


class Order(threading.Thread):
    """One order's transaction: claim, then keep the transaction open until told to commit."""

    def __init__(self, region, need: Resources):
        super().__init__(daemon=True)
        self.region = region
        self.need = need
        self.result: object = None
        self.backend_pid: int | None = None
        self.started_claim = threading.Event()
        self.claimed = threading.Event()
        self.commit = threading.Event()

    def run(self) -> None:
        try:
            try:
                with transaction.atomic():
                    with db_connection.cursor() as cursor:
                        cursor.execute("SELECT pg_backend_pid()")
                        self.backend_pid = cursor.fetchone()[0]
                    self.started_claim.set()
                    self.result = services.claim(uuid.uuid4(), self.region, self.need).pk
                    self.claimed.set()
                    self.commit.wait(timeout=30)
            except Exception as exc:  # NoCapacity expected for the losers; a deadlock fails the test
                self.result = exc
        finally:
            self.started_claim.set()
            self.claimed.set()
            db_connection.close()


def blocked_by(order: Order, *holders: Order, timeout: float = 10) -> None:
    """Wait until the order's backend waits for a lock that one of `holders` holds (or queues for)."""
    order.started_claim.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db_connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_blocking_pids(%s) && %s::int[]",
                [order.backend_pid, [h.backend_pid for h in holders]],
            )
            if cursor.fetchone()[0]:
                return
        time.sleep(0.02)
    pytest.fail(f"the order never waited for the other; its result: {order.result!r}")


def finish(*orders: Order) -> None:
    for order in orders:
        order.commit.set()
    for order in orders:
        order.join(timeout=30)
        assert not order.is_alive()


def test_two_claims_passing_over_full_hosts_in_opposite_orders_both_end_in_no_capacity():
    region = factories.make_region()
    # host_a is created first (smaller pk); disks steer the fillers: only host_a takes 50 GiB.
    host_a = factories.set_host_size(factories.make_host(region=region, probe=False), memory_mib=3 * GIB_MIB)
    host_b = factories.set_host_size(
        factories.make_host(region=region, probe=False), memory_mib=4 * GIB_MIB, disk_gib=10
    )
    earlier = Allocation.objects.create(
        consumer_uuid=uuid.uuid4(), host=host_b, vcpus=1, memory_mib=2 * GIB_MIB, disk_gib=1
    )
    small = Resources(vcpus=1, memory_mib=GIB_MIB, disk_gib=1)
    fill_a = Order(region, Resources(vcpus=1, memory_mib=3 * GIB_MIB, disk_gib=50))
    fill_b = Order(region, Resources(vcpus=1, memory_mib=4 * GIB_MIB, disk_gib=5))
    first, second = Order(region, small), Order(region, small)

    try:
        # An order fills host_a and is about to commit.
        fill_a.start()
        fill_a.claimed.wait(timeout=10)
        assert fill_a.result == host_a.pk
        # first sees host_a (3 GiB free) before host_b (2 GiB free) and waits for host_a.
        first.start()
        blocked_by(first, fill_a)

        # A server on host_b is deleted: host_b now looks freer (4 GiB), and another order fills it.
        services.release(earlier.consumer_uuid)
        fill_b.start()
        fill_b.claimed.wait(timeout=10)
        assert fill_b.result == host_b.pk
        # second sees host_b before host_a, and waits for host_b.
        second.start()
        blocked_by(second, fill_b)

        # host_a's order commits: first finds host_a full and moves on to host_b (queued behind second).
        finish(fill_a)
        blocked_by(first, fill_b, second)
        # host_b's order commits: second finds host_b full and moves on to host_a.
        finish(fill_b)
        finish(first, second)
    finally:
        finish(*(order for order in (fill_a, fill_b, first, second) if order.ident))

    assert isinstance(first.result, NoCapacity), repr(first.result)
    assert isinstance(second.result, NoCapacity), repr(second.result)
    assert Allocation.objects.filter(host=host_a).count() == 1
    assert Allocation.objects.filter(host=host_b).count() == 1
