"""An account suspended for an overdue invoice is unsuspended as soon as a provider's payment of it is
credited: its subscriptions are active again and billing tells the panel (account_unsuspended)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from billing import checkouts, signals
from billing.dunning import dun
from billing.models import Invoice, Subscription
from billing.subscriptions import open_subscription
from tests import factories

from .conftest import return_url

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("provider", ["midtrans", "xendit"])
def test_a_paid_overdue_invoice_unsuspends_the_subscriptions(
    request, customer, provider, django_capture_on_commit_callbacks
):
    server = request.getfixturevalue(provider)
    now = timezone.now()
    reference = str(uuid.uuid4())  # a server's id (no such server here: the panel's receiver skips it)
    subscription = open_subscription(
        customer, factories.make_plan(), reference, "web1", at=now - timedelta(days=12)
    )
    dun(now)
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.SUSPENDED
    (invoice,) = Invoice.objects.filter(account=customer, status=Invoice.Status.OPEN)
    told = []

    def receiver(sender, account, references, **kwargs):
        told.append((account.pk, list(references)))

    signals.account_unsuspended.connect(receiver)
    try:
        checkout = checkouts.start(customer, provider, invoice=invoice, return_url=return_url)
        with django_capture_on_commit_callbacks(execute=True):
            server.pay(checkout.reference)
    finally:
        signals.account_unsuspended.disconnect(receiver)

    invoice.refresh_from_db()
    subscription.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert subscription.status == Subscription.Status.ACTIVE
    assert subscription.suspended_at is None and subscription.resumed_at is not None
    assert told == [(customer.pk, [reference])]
