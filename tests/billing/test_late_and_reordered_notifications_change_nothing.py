"""Notifications arrive late, twice, or out of order; the provider's status API decides, and a paid
checkout never changes again: an "expire" after the settlement, or a "pending" sent before it but arriving
after, leaves the payment credited once."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import ledger
from billing.models import Checkout, Payment

pytestmark = pytest.mark.django_db


def _paid_once(customer, checkout, amount: str) -> None:
    checkout.refresh_from_db()
    assert checkout.status == Checkout.Status.PAID
    assert Payment.objects.filter(account=customer).count() == 1
    assert ledger.balance(customer) == Decimal(amount)


def test_a_late_midtrans_expire_after_the_settlement_changes_nothing(customer, midtrans, top_up):
    checkout = top_up(customer, "midtrans", "50000")
    midtrans.pay(checkout.reference)
    paid_at = Checkout.objects.get(pk=checkout.pk).paid_at

    assert midtrans.notify(checkout.reference, transaction_status="expire").answer == 200

    _paid_once(customer, checkout, "50000")
    assert checkout.paid_at == paid_at and checkout.closed_at == paid_at


def test_a_midtrans_pending_arriving_after_the_settlement_changes_nothing(customer, midtrans, top_up):
    checkout = top_up(customer, "midtrans", "50000")
    midtrans.choose(checkout.reference, notify=False)
    pending = midtrans.notify(checkout.reference)  # sent first ...
    assert pending.json()["transaction_status"] == "pending"
    midtrans.pay(checkout.reference)

    assert midtrans.resend(0).answer == 200  # ... and retried after the settlement

    _paid_once(customer, checkout, "50000")


def test_a_late_pending_notification_still_credits_a_settlement_whose_own_notification_was_lost(
    customer, midtrans, top_up
):
    checkout = top_up(customer, "midtrans", "50000")
    midtrans.choose(checkout.reference, notify=False)
    midtrans.drop_notifications = True
    midtrans.notify(checkout.reference)  # the "pending", held up somewhere
    midtrans.pay(checkout.reference)  # the "settlement", lost
    midtrans.drop_notifications = False

    assert midtrans.resend(0).answer == 200  # the "pending" arrives at last: the status API says settled

    _paid_once(customer, checkout, "50000")


def test_a_late_xendit_expired_callback_after_the_payment_changes_nothing(customer, xendit, top_up):
    checkout = top_up(customer, "xendit", "50000")
    xendit.pay(checkout.reference)

    assert xendit.notify(checkout.reference, status="EXPIRED").answer == 200
    xendit.set_status(checkout.reference, "SETTLED")
    assert xendit.notify(checkout.reference).answer == 200

    _paid_once(customer, checkout, "50000")


@pytest.mark.parametrize("provider", ["midtrans", "xendit"])
def test_money_that_arrives_after_the_checkout_expired_here_is_still_credited(
    request, customer, top_up, provider
):
    server = request.getfixturevalue(provider)
    checkout = top_up(customer, provider, "50000")
    server.expire(checkout.reference)
    checkout.refresh_from_db()
    assert checkout.status == Checkout.Status.EXPIRED and checkout.closed_at is not None

    server.set_status(checkout.reference, "settlement" if provider == "midtrans" else "PAID")
    server.notify(checkout.reference)

    _paid_once(customer, checkout, "50000")
