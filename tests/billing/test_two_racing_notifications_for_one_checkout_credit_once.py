"""Two deliveries of the same payment racing each other (a notification and its retry, or a notification
and the poll) both see the provider's "paid": the account's lock lets one credit it, and the other finds
the checkout paid. The provider's stand-in holds both status answers until both have asked."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connections

from billing import checkouts, ledger
from billing.models import Checkout, LedgerEntry, Payment

pytestmark = pytest.mark.django_db(transaction=True)


def _in_threads(*jobs) -> list:
    results: list = [None] * len(jobs)
    errors: list = []

    def run(index, job):
        try:
            results[index] = job()
        except Exception as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


def _credited_once(customer, checkout, amount: str) -> None:
    checkout.refresh_from_db()
    assert checkout.status == Checkout.Status.PAID
    assert Payment.objects.filter(account=customer).count() == 1
    assert LedgerEntry.objects.filter(account=customer, kind=LedgerEntry.Kind.PAYMENT).count() == 1
    assert ledger.balance(customer) == Decimal(amount)


@pytest.mark.parametrize("provider", ["midtrans", "xendit"])
def test_two_racing_notifications_credit_once(request, customer, top_up, provider):
    server = request.getfixturevalue(provider)
    checkout = top_up(customer, provider, "60000")
    server.drop_notifications = True
    server.pay(checkout.reference)  # the notification is kept, to be sent twice at once
    server.drop_notifications = False
    server.status_barrier = threading.Barrier(2, timeout=20)

    first, second = _in_threads(lambda: server.resend(0), lambda: server.resend(0))

    assert (first.answer, second.answer) == (200, 200)
    assert len(server.received("GET", "/v2/")) == 2  # both asked, both were told "paid"
    _credited_once(customer, checkout, "60000")


def test_a_notification_racing_the_poll_credits_once(customer, midtrans, top_up):
    checkout = top_up(customer, "midtrans", "60000")
    Checkout.objects.filter(pk=checkout.pk).update(created_at=checkout.created_at.replace(year=2020))
    midtrans.drop_notifications = True
    midtrans.pay(checkout.reference)
    midtrans.drop_notifications = False
    midtrans.status_barrier = threading.Barrier(2, timeout=20)

    notified, polled = _in_threads(lambda: midtrans.resend(0), checkouts.poll)

    assert notified.answer == 200
    assert polled["asked"] == 1 and polled["errors"] == 0
    _credited_once(customer, checkout, "60000")
