"""A payment's reference is unique. Staff who record a provider's payment by hand (its transaction id as
the reference) before the notification arrives do not make it count twice: the checkout is paid by that
same payment. A reference already taken by another customer's payment credits nothing and leaves the
checkout failed with the reason."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import ledger
from billing.models import Checkout, Payment
from billing.payments import record_payment

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("provider", ["midtrans", "xendit"])
def test_staff_recorded_it_first_and_the_notification_credits_nothing_more(
    request, customer, staff, top_up, provider
):
    server = request.getfixturevalue(provider)
    checkout = top_up(customer, provider, "75000")
    transaction_id = server.pay(checkout.reference, notify=False)
    recorded, created = record_payment(customer, Decimal("75000"), transaction_id, method=provider, by=staff)
    assert created

    assert server.notify(checkout.reference).answer == 200

    checkout.refresh_from_db()
    assert checkout.status == Checkout.Status.PAID
    assert checkout.payment == recorded and checkout.transaction_id == transaction_id
    assert Payment.objects.filter(account=customer).count() == 1
    assert ledger.balance(customer) == Decimal("75000")


@pytest.mark.parametrize("provider", ["midtrans", "xendit"])
def test_the_reference_of_another_customers_payment_leaves_the_checkout_failed(
    request, customer, other_customer, staff, top_up, provider
):
    server = request.getfixturevalue(provider)
    checkout = top_up(customer, provider, "75000")
    transaction_id = server.pay(checkout.reference, notify=False)
    record_payment(other_customer, Decimal("75000"), transaction_id, by=staff)  # a typo by staff

    assert server.notify(checkout.reference).answer == 200

    checkout.refresh_from_db()
    assert checkout.status == Checkout.Status.FAILED
    assert checkout.status_reason == f"transaction {transaction_id} is another customer's payment"
    assert checkout.payment is None
    assert not Payment.objects.filter(account=customer).exists()
    assert ledger.balance(customer) == 0
    assert ledger.balance(other_customer) == Decimal("75000")
