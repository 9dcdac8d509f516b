"""Providers retry notifications until they get a 200, and may send the same one twice: the second finds
the checkout paid and credits nothing more."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import ledger
from billing.models import Checkout, Payment

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("provider", ["midtrans", "xendit"])
def test_a_repeated_notification_credits_once(request, customer, top_up, provider):
    server = request.getfixturevalue(provider)
    checkout = top_up(customer, provider, "100000")
    server.pay(checkout.reference)

    again = server.resend()
    server.notify(checkout.reference)  # and once more, freshly made

    assert again.answer == 200
    assert [n.answer for n in server.notifications] == [200, 200, 200]
    assert ledger.balance(customer) == Decimal("100000")
    assert Payment.objects.filter(account=customer).count() == 1
    checkout.refresh_from_db()
    assert checkout.status == Checkout.Status.PAID
