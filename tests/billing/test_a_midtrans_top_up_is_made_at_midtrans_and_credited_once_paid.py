"""A top-up through Midtrans: the panel asks Snap for a transaction with the documented body, sends the
customer to its redirect_url, and once the payment is settled and notified credits the balance once, the
Payment's reference being Midtrans's transaction id and its method "midtrans"."""

from __future__ import annotations

import base64
from datetime import datetime
from decimal import Decimal

import pytest

from billing import checkouts, ledger
from billing.models import Checkout, LedgerEntry, Payment

from .conftest import return_url

pytestmark = pytest.mark.django_db


def test_the_checkout_is_a_snap_transaction_with_the_documented_body(customer, midtrans, top_up):
    checkout = top_up(customer, "midtrans", "150000")

    (request,) = midtrans.received("POST", "/snap/v1/transactions")
    assert request.status == 201
    assert (
        request.headers["authorization"] == "Basic " + base64.b64encode(f"{midtrans.key}:".encode()).decode()
    )
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert body["transaction_details"] == {"order_id": checkout.reference, "gross_amount": 150000}
    assert sum(item["price"] * item["quantity"] for item in body["item_details"]) == 150000
    assert body["customer_details"]["email"] == customer.email
    assert body["callbacks"] == {"finish": return_url(checkout)}
    assert body["expiry"]["unit"] == "minutes" and body["expiry"]["duration"] > 0
    datetime.strptime(body["expiry"]["start_time"], "%Y-%m-%d %H:%M:%S %z")

    transaction = midtrans.transaction(checkout.reference)
    assert checkout.status == Checkout.Status.PENDING
    assert checkout.provider_id == transaction.token
    assert checkout.checkout_url == f"{midtrans.url}/snap/v4/redirection/{transaction.token}"
    assert checkout.amount == Decimal("150000") and checkout.currency == "IDR"


def test_until_the_customer_chooses_how_to_pay_the_status_api_says_404_and_it_stays_pending(
    customer, midtrans, top_up
):
    checkout = top_up(customer, "midtrans")
    checkout = checkouts.refresh(checkout)
    assert midtrans.received("GET", f"/v2/{checkout.reference}/status")[-1].status == 404
    assert checkout.status == Checkout.Status.PENDING
    assert checkout.checked_at is not None
    midtrans.choose(checkout.reference)  # a virtual account: pending, notified
    checkout.refresh_from_db()
    assert checkout.status == Checkout.Status.PENDING
    assert ledger.balance(customer) == 0


def test_a_settled_payment_is_credited_once_with_the_transaction_id_as_reference(customer, midtrans, top_up):
    checkout = top_up(customer, "midtrans", "150000")

    transaction_id = midtrans.pay(checkout.reference)

    (notification,) = midtrans.notifications
    assert notification.answer == 200
    sent = notification.json()
    assert sent["transaction_status"] == "settlement" and sent["status_code"] == "200"
    assert sent["gross_amount"] == "150000.00"
    # The panel asked the status API before crediting anything.
    assert midtrans.received("GET", f"/v2/{checkout.reference}/status")[-1].status == 200
    checkout.refresh_from_db()
    assert checkout.status == Checkout.Status.PAID
    assert checkout.transaction_id == transaction_id
    payment = Payment.objects.get(account=customer)
    assert checkout.payment == payment
    assert (payment.reference, payment.method, payment.amount) == (
        transaction_id,
        "midtrans",
        Decimal("150000"),
    )
    assert ledger.balance(customer) == Decimal("150000")
    assert LedgerEntry.objects.filter(account=customer, kind=LedgerEntry.Kind.PAYMENT).count() == 1
