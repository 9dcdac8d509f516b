"""A payment the provider confirms that is not exactly what the checkout asked for, in its amount or its
currency, is not credited: the checkout fails with the reason, for staff to look at."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import ledger
from billing.models import Checkout, Payment
from panel.models import ActivityEvent

pytestmark = pytest.mark.django_db

SETTLED = {"midtrans": "settlement", "xendit": "PAID"}


@pytest.mark.parametrize("provider", ["midtrans", "xendit"])
def test_a_payment_of_another_amount_fails_the_checkout(request, customer, top_up, provider):
    server = request.getfixturevalue(provider)
    checkout = top_up(customer, provider, "150000")

    server.pay(checkout.reference, amount=Decimal("15000"))

    checkout.refresh_from_db()
    assert checkout.status == Checkout.Status.FAILED
    assert checkout.status_reason == "paid 15000, expected 150000"
    assert checkout.closed_at is not None and checkout.payment is None
    assert not Payment.objects.exists() and ledger.balance(customer) == 0
    # Staff see it on the customer's activity log, with the order id to look it up by.
    (event,) = ActivityEvent.objects.filter(account=customer, type=ActivityEvent.Type.PAYMENT_REFUSED)
    assert checkout.reference in event.text and "paid 15000, expected 150000" in event.text


@pytest.mark.parametrize("provider", ["midtrans", "xendit"])
def test_a_payment_in_another_currency_fails_the_checkout(request, customer, top_up, provider):
    server = request.getfixturevalue(provider)
    checkout = top_up(customer, provider, "150000")

    server.set_status(checkout.reference, SETTLED[provider], currency="USD")
    server.notify(checkout.reference)

    checkout.refresh_from_db()
    assert checkout.status == Checkout.Status.FAILED
    assert checkout.status_reason == "paid in USD, expected IDR"
    assert not Payment.objects.exists() and ledger.balance(customer) == 0
    # Told again, it is still not credited, and failed when first told.
    closed_at = checkout.closed_at
    server.resend()
    checkout.refresh_from_db()
    assert checkout.status == Checkout.Status.FAILED and checkout.closed_at == closed_at
    assert not Payment.objects.exists()
    assert ActivityEvent.objects.filter(type=ActivityEvent.Type.PAYMENT_REFUSED).count() == 1  # told once
