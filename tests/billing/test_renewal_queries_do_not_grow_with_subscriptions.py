"""billing_run renews batches of accounts: the questions it asks Postgres for one account are the same for
two subscriptions as for twelve (bulk writes, one settlement), and each renewal is still its own invoice,
numbered in order without gaps."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.cycle import renew
from billing.models import Invoice, InvoiceLine, InvoiceSequence, LedgerEntry, Subscription
from billing.subscriptions import open_subscription
from panel.models import User
from tests import factories

pytestmark = pytest.mark.django_db


def _account_with(subscriptions: int, plan) -> User:
    account = factories.make_user(User.Role.CUSTOMER)
    for index in range(subscriptions):
        open_subscription(account, plan, f"ref-{account.pk}-{index}", f"s{index}.example.com")
    return account


def _renew_queries(account: User) -> int:
    due = timezone.now() + timedelta(days=40)
    with CaptureQueriesContext(connection) as queries:
        issued = renew(due)
    assert issued == Subscription.objects.filter(account=account).count()
    return len(queries)


def test_renewing_twelve_subscriptions_asks_as_many_questions_as_two():
    for year in {timezone.localtime().year, timezone.localtime(timezone.now() + timedelta(days=40)).year}:
        InvoiceSequence.objects.get_or_create(year=year)  # the year's first invoice makes its row
    plan = factories.make_plan()
    small, big = _account_with(2, plan), _account_with(12, plan)
    paid_through = Subscription.objects.filter(account=big).values_list("paid_through", flat=True).first()
    Subscription.objects.filter(account=big).update(paid_through=timezone.now() + timedelta(days=60))
    few = _renew_queries(small)  # one period each: paid a month ahead again, past the moment of the run
    Subscription.objects.filter(account=big).update(paid_through=paid_through)
    many = _renew_queries(big)
    assert many == few


def test_each_renewal_is_an_invoice_of_its_own_numbered_without_gaps():
    plan = factories.make_plan()
    account = _account_with(3, plan)
    before = set(Invoice.objects.values_list("number", flat=True))
    renew(timezone.now() + timedelta(days=40))
    renewed = Invoice.objects.filter(account=account).exclude(number__in=before).order_by("number")
    assert renewed.count() == 3
    numbers = [int(number.rsplit("-", 1)[1]) for number in renewed.values_list("number", flat=True)]
    assert numbers == list(range(numbers[0], numbers[0] + 3))
    for invoice in renewed:
        assert InvoiceLine.objects.filter(invoice=invoice).count() == 1
        assert LedgerEntry.objects.get(invoice=invoice, kind=LedgerEntry.Kind.CHARGE).amount == -invoice.total
    # Nothing due is left: a second run for the same moment issues nothing.
    assert renew(timezone.now() + timedelta(days=40)) == 0
