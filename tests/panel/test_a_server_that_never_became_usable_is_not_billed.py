"""A create that fails ends the server's subscription and takes back its charge (an open first invoice is
voided, a paid one credited), once, however often the failure is handled; the reaper does the same for a
create that never finished."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import cycle, ledger, payments, subscriptions
from billing.models import Invoice, LedgerEntry, Subscription
from hypervisor.models import Host
from panel.models import Operation
from panel.servers import actions, operations

pytestmark = pytest.mark.django_db


def failed_order(customer, catalog):
    server = actions.order_server(
        customer, name="web1", plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
    )
    operation = Operation.objects.get(server=server, type=Operation.Type.CREATE)
    Host.objects.filter(pk=catalog["host"].pk).update(storage_pool="missing-pool")
    operations.execute(str(operation.pk))
    server.refresh_from_db()
    assert server.status == "error"
    return server, operation


def test_the_open_first_invoice_is_voided_and_the_subscription_ends(customer, catalog):
    server, operation = failed_order(customer, catalog)

    subscription = Subscription.objects.get(reference=str(server.id))
    assert subscription.status == Subscription.Status.ENDED
    invoice = Invoice.objects.get(account=customer)
    assert invoice.status == Invoice.Status.VOID
    assert ledger.balance(customer) == 0
    # Later billing runs neither renew it nor dun the customer.
    assert cycle.run(timezone.now() + timedelta(days=70))["renewed"] == 0
    assert Invoice.objects.filter(account=customer).count() == 1

    # Handling the failure again (a redelivered task, a crash before the commit) takes nothing back twice.
    operations.on_failure(operation, "again")
    assert not subscriptions.cancel_unused_subscription(str(server.id))
    assert ledger.balance(customer) == 0
    assert LedgerEntry.objects.filter(account=customer, kind=LedgerEntry.Kind.CREDIT).count() == 1


def test_a_paid_first_invoice_is_credited_back(customer, catalog):
    payments.record_payment(customer, Decimal("50000"), "bank-1")
    server, _operation = failed_order(customer, catalog)

    assert Invoice.objects.get(account=customer).status == Invoice.Status.PAID
    assert ledger.balance(customer) == Decimal("50000")  # the payment is the customer's credit again


def test_the_reaper_ends_billing_of_a_create_that_never_finished(customer, catalog):
    server = actions.order_server(
        customer, name="web1", plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
    )
    Operation.objects.filter(server=server).update(deadline=timezone.now() - timedelta(seconds=1))

    assert operations.reap_stuck_operations() == 1

    assert Subscription.objects.get(reference=str(server.id)).status == Subscription.Status.ENDED
    assert Invoice.objects.get(account=customer).status == Invoice.Status.VOID
