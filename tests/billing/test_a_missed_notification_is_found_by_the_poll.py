"""A notification that never arrives (a missed webhook) is made up for by the periodic poll
(billing.tasks.poll_checkouts, every CHECKOUT_POLL_INTERVAL): it asks the provider about checkouts still
pending that a customer had time to pay, those never asked about first."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import checkouts, ledger, tasks
from billing.models import Checkout, Payment

pytestmark = pytest.mark.django_db


def _minutes_old(checkout, minutes: int) -> None:
    """The customer had that long to pay (the checkout was made that long ago)."""
    Checkout.objects.filter(pk=checkout.pk).update(created_at=timezone.now() - timedelta(minutes=minutes))


@pytest.mark.parametrize("provider", ["midtrans", "xendit"])
def test_the_poll_credits_a_payment_whose_notification_was_lost(request, customer, top_up, provider):
    server = request.getfixturevalue(provider)
    server.drop_notifications = True
    checkout = top_up(customer, provider, "120000")
    server.pay(checkout.reference)
    assert [n.answer for n in server.notifications] == [None]
    assert ledger.balance(customer) == 0
    _minutes_old(checkout, 5)

    counts = tasks.poll_checkouts()

    assert counts == {"asked": 1, "paid": 1, "closed": 0, "errors": 0}
    checkout.refresh_from_db()
    assert checkout.status == Checkout.Status.PAID
    assert Payment.objects.get(account=customer).reference == checkout.transaction_id
    assert ledger.balance(customer) == Decimal("120000")
    # Paid checkouts are not asked about again.
    assert checkouts.poll() == {"asked": 0, "paid": 0, "closed": 0, "errors": 0}


def test_a_checkout_younger_than_a_minute_is_left_to_its_customer(customer, midtrans, top_up):
    checkout = top_up(customer, "midtrans")
    assert checkouts.poll() == {"asked": 0, "paid": 0, "closed": 0, "errors": 0}
    assert not midtrans.received("GET", "/v2/")
    assert checkouts.poll(timezone.now() + timedelta(minutes=2))["asked"] == 1
    checkout.refresh_from_db()
    assert checkout.checked_at is not None and checkout.status == Checkout.Status.PENDING


def test_the_poll_closes_what_expired_at_the_provider_and_asks_again_after_an_error(
    customer, midtrans, xendit, top_up
):
    expired = top_up(customer, "midtrans")
    unreachable = top_up(customer, "xendit")
    midtrans.drop_notifications = True
    midtrans.expire(expired.reference)
    _minutes_old(expired, 5)
    _minutes_old(unreachable, 5)

    with xendit.outage():
        counts = checkouts.poll()

    assert counts == {"asked": 2, "paid": 0, "closed": 1, "errors": 1}
    expired.refresh_from_db()
    assert (expired.status, expired.status_reason) == (Checkout.Status.EXPIRED, "expire")
    unreachable.refresh_from_db()
    assert unreachable.status == Checkout.Status.PENDING and unreachable.checked_at is not None
    # Asked about a minute ago: its turn comes again after a minute.
    assert checkouts.poll()["asked"] == 0
    xendit.pay(unreachable.reference, notify=False)
    assert checkouts.poll(timezone.now() + timedelta(minutes=2)) == {
        "asked": 1,
        "paid": 1,
        "closed": 0,
        "errors": 0,
    }


def test_a_provider_that_cannot_be_asked_is_not_asked_again_in_the_same_run(customer, xendit, top_up):
    waiting = [top_up(customer, "xendit") for _ in range(3)]
    for checkout in waiting:
        _minutes_old(checkout, 5)

    with xendit.outage():
        assert checkouts.poll() == {"asked": 1, "paid": 0, "closed": 0, "errors": 1}

    # All of them wait for the next run, none of them asked twice in this one.
    assert all(c.checked_at is not None for c in Checkout.objects.filter(pk__in=[c.pk for c in waiting]))
    assert Checkout.objects.filter(status=Checkout.Status.PENDING).count() == 3


def test_a_checkout_the_provider_never_answers_about_expires_an_hour_after_its_expiry(
    customer, midtrans, top_up
):
    checkout = top_up(customer, "midtrans")
    soon = checkout.expires_at + timedelta(minutes=30)
    assert checkouts.poll(soon) == {"asked": 1, "paid": 0, "closed": 0, "errors": 0}
    later = checkout.expires_at + timedelta(hours=1, minutes=2)
    assert checkouts.poll(later) == {"asked": 1, "paid": 0, "closed": 1, "errors": 0}
    checkout.refresh_from_db()
    assert (checkout.status, checkout.status_reason) == (
        Checkout.Status.EXPIRED,
        "no answer from the provider",
    )
