"""Claims under concurrency: a claim passes over a host another claim holds, waits only when every host
with room is busy, moves on from a host that turned out full (holding nothing of it), and never deadlocks.

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

from hypervisor import claims
from hypervisor.models import Allocation, Host
from hypervisor.placement import NoCapacity, Resources
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
                    self.result = claims.claim(uuid.uuid4(), self.region, self.need).pk
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


def test_a_claim_passes_over_a_host_another_claim_holds():
    """Concurrent orders spread out: the best host is busy (another order's claim holds its row), so the
    claim takes the next host at once instead of queueing."""
    region = factories.make_region()
    host_a = factories.set_host_size(factories.make_host(region=region, probe=False), memory_mib=8 * GIB_MIB)
    host_b = factories.set_host_size(factories.make_host(region=region, probe=False), memory_mib=4 * GIB_MIB)
    small = Resources(vcpus=1, memory_mib=GIB_MIB, disk_gib=1)
    holder, other = Order(region, small), Order(region, small)
    try:
        holder.start()
        holder.claimed.wait(timeout=10)
        assert holder.result == host_a.pk  # the most free memory first
        other.start()
        other.claimed.wait(timeout=10)
        assert other.result == host_b.pk  # not blocked behind the holder: it never committed yet
    finally:
        finish(*(order for order in (holder, other) if order.ident))
    assert Allocation.objects.filter(host=host_a).count() == 1
    assert Allocation.objects.filter(host=host_b).count() == 1


def test_claims_waiting_on_busy_hosts_hold_none_meanwhile_and_do_not_deadlock():
    """When every host with room is busy, a claim waits for them one at a time in its ranking, holding no
    other host's row meanwhile (the attempt on a host that turned out full is rolled back, releasing its
    lock), so claims never deadlock, and what they end with never exceeds a host's capacity. (A host's usage
    changes only under its row lock, so claims waiting at the same time rank the busy hosts alike.)"""
    region = factories.make_region()
    # host_a is created first (smaller pk); disks steer the fillers: only host_a takes 50 GiB.
    host_a = factories.set_host_size(factories.make_host(region=region, probe=False), memory_mib=5 * GIB_MIB)
    host_b = factories.set_host_size(
        factories.make_host(region=region, probe=False), memory_mib=6 * GIB_MIB, disk_gib=10
    )
    Allocation.objects.create(
        consumer_uuid=uuid.uuid4(), host=host_b, vcpus=1, memory_mib=2 * GIB_MIB, disk_gib=1
    )
    small = Resources(vcpus=1, memory_mib=GIB_MIB, disk_gib=1)
    fill_a = Order(region, Resources(vcpus=1, memory_mib=5 * GIB_MIB, disk_gib=50))
    fill_b = Order(region, Resources(vcpus=1, memory_mib=2 * GIB_MIB, disk_gib=5))
    first, second = Order(region, small), Order(region, small)

    try:
        # One order fills host_a, another takes 2 of host_b's 4 free GiB; both are about to commit.
        fill_a.start()
        fill_a.claimed.wait(timeout=10)
        assert fill_a.result == host_a.pk
        fill_b.start()
        fill_b.claimed.wait(timeout=10)
        assert fill_b.result == host_b.pk
        # first ranks host_a (5 GiB free) before host_b (4 GiB free); both are busy: it waits for host_a.
        first.start()
        blocked_by(first, fill_a)
        second.start()
        blocked_by(second, fill_a, first)

        # host_a's order commits: both find host_a full and move on to host_b, holding nothing of host_a.
        finish(fill_a)
        blocked_by(first, fill_b, second)
        blocked_by(second, fill_b, first)
        with db_connection.cursor() as cursor:  # nobody holds host_a's row any more
            cursor.execute("SELECT id FROM hypervisor_host WHERE id = %s FOR UPDATE NOWAIT", [host_a.pk])
        # host_b's order commits: host_b has 2 GiB free; the two waiting claims take one each.
        finish(fill_b)
        for order in (first, second):
            order.claimed.wait(timeout=10)
        finish(first, second)
    finally:
        finish(*(order for order in (fill_a, fill_b, first, second) if order.ident))

    assert second.result == host_b.pk, repr(second.result)
    assert first.result == host_b.pk, repr(first.result)
    assert Allocation.objects.filter(host=host_a).count() == 1
    assert sum(a.memory_mib for a in Allocation.objects.filter(host=host_b)) == 6 * GIB_MIB
    assert Host.objects.get(pk=host_b.pk).used_memory_mib == 6 * GIB_MIB


def test_claims_over_busy_full_hosts_end_in_no_capacity():
    """A claim that waited for a busy host which then turned out full ends in NoCapacity, not an error."""
    region = factories.make_region()
    host = factories.set_host_size(factories.make_host(region=region, probe=False), memory_mib=2 * GIB_MIB)
    fill, late = Order(region, Resources(1, 2 * GIB_MIB, 1)), Order(region, Resources(1, GIB_MIB, 1))
    try:
        fill.start()
        fill.claimed.wait(timeout=10)
        assert fill.result == host.pk
        late.start()
        blocked_by(late, fill)
        finish(fill)
        finish(late)
    finally:
        finish(*(order for order in (fill, late) if order.ident))
    assert isinstance(late.result, NoCapacity), repr(late.result)
    assert Allocation.objects.filter(host=host).count() == 1
