"""Paths that take several locks take them in one order (customer, server, host, address, invoice
numbering, firewall rows) through panel.servers.locks.LockOrder, which refuses to go back."""

from __future__ import annotations

import uuid

import pytest
from django.db import transaction

from hypervisor.placement import Resources
from panel.models import Operation
from panel.servers import actions
from panel.servers.locks import Lock, LockOrder, LockOrderError
from tests import factories

pytestmark = pytest.mark.django_db


def test_the_order_is_customer_server_host_address_invoice_number_firewall():
    assert [lock.name for lock in sorted(Lock)] == [
        "CUSTOMER",
        "SERVER",
        "HOST",
        "ADDRESS",
        "INVOICE_NUMBER",
        "FIREWALL",
    ]


def test_a_lock_is_never_taken_after_a_later_one(customer, catalog):
    with transaction.atomic():
        locks = LockOrder()
        locks.claim(uuid.uuid4(), catalog["region"], Resources(1, 256, 1))
        with pytest.raises(LockOrderError, match="customer lock is taken after the host lock"):
            locks.customer(customer.pk)
        with pytest.raises(LockOrderError, match="server lock is taken after the host lock"):
            locks.server()
        transaction.set_rollback(True)


@pytest.mark.django_db(transaction=True)
def test_locks_need_a_transaction(customer):
    with pytest.raises(LockOrderError, match="needs a transaction"):
        LockOrder().customer(customer.pk)


def test_the_customer_asked_again_costs_no_query(customer, django_assert_num_queries):
    with transaction.atomic():  # the lock's statement is prepared once per database session (a PREPARE)
        LockOrder().customer(customer.pk)
    with transaction.atomic():
        locks = LockOrder()
        with django_assert_num_queries(1):
            first = locks.customer(customer.pk)
        with django_assert_num_queries(0):
            again = locks.customer(customer.pk)
        assert first is again
        with pytest.raises(LockOrderError, match="one customer"):
            locks.customer(customer.pk + 1)


def test_an_action_that_counts_the_quota_locks_the_customer_before_the_server(customer, catalog, monkeypatch):
    """A resize locks the customer, then the server (its compare-and-swap), then the host and the invoice
    numbering."""
    server = factories.make_real_server(
        customer, plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
    )
    bigger = factories.make_plan(slug="bigger", vcpus=2, memory_mib=512, disk_gib=2)
    taken: list[Lock] = []
    original = LockOrder._take

    def record(self, lock):
        original(self, lock)
        if lock not in taken:
            taken.append(lock)

    monkeypatch.setattr(LockOrder, "_take", record)
    operation = actions.resize_server(server, bigger, customer)
    assert operation.type == Operation.Type.RESIZE
    assert taken == [Lock.CUSTOMER, Lock.SERVER, Lock.HOST, Lock.INVOICE_NUMBER]
