"""A top-up through Xendit: the panel makes an invoice (POST /v2/invoices) with the documented body, sends
the customer to its invoice_url, and once it is PAID and the callback arrives credits the balance once,
the Payment's reference being Xendit's invoice id and its method "xendit"."""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest

from billing import checkouts, ledger
from billing.models import Checkout, LedgerEntry, Payment

from .conftest import return_url

pytestmark = pytest.mark.django_db


def test_the_checkout_is_an_invoice_with_the_documented_body(customer, xendit, top_up, settings):
    settings.CHECKOUT_EXPIRY_MINUTES = 90
    checkout = top_up(customer, "xendit", "250000")

    (request,) = xendit.received("POST", "/v2/invoices")
    assert request.status == 200
    assert request.headers["authorization"] == "Basic " + base64.b64encode(f"{xendit.key}:".encode()).decode()
    body = request.json()
    assert body["external_id"] == checkout.reference
    assert body["amount"] == 250000
    assert body["currency"] == "IDR"
    assert body["payer_email"] == customer.email
    assert body["description"]
    assert 89 * 60 <= body["invoice_duration"] <= 90 * 60
    assert body["success_redirect_url"] == body["failure_redirect_url"] == return_url(checkout)

    invoice = xendit.invoice(checkout.reference)
    assert checkout.status == Checkout.Status.PENDING
    assert checkout.provider_id == invoice.id
    assert checkout.checkout_url == f"{xendit.url}/web/{invoice.id}"
    # The expiry is Xendit's expiry_date.
    assert abs((checkout.expires_at - invoice.expiry_date).total_seconds()) < 1


def test_a_pending_invoice_stays_pending(customer, xendit, top_up):
    checkout = checkouts.refresh(top_up(customer, "xendit"))
    assert checkout.status == Checkout.Status.PENDING
    assert xendit.received("GET", f"/v2/invoices/{checkout.provider_id}")[-1].status == 200
    assert ledger.balance(customer) == 0


def test_a_paid_invoice_is_credited_once_with_the_invoice_id_as_reference(customer, xendit, top_up):
    checkout = top_up(customer, "xendit", "250000")

    invoice_id = xendit.pay(checkout.reference)

    (notification,) = xendit.notifications
    assert notification.answer == 200
    assert notification.headers["x-callback-token"] == xendit.callback_token
    sent = notification.json()
    assert (sent["status"], sent["paid_amount"], sent["currency"]) == ("PAID", 250000, "IDR")
    assert sent["payment_method"] == "BANK_TRANSFER" and sent["payment_channel"]
    assert xendit.received("GET", f"/v2/invoices/{invoice_id}")[-1].status == 200
    checkout.refresh_from_db()
    assert checkout.status == Checkout.Status.PAID
    payment = Payment.objects.get(account=customer)
    assert checkout.payment == payment and checkout.transaction_id == invoice_id
    assert (payment.reference, payment.method, payment.amount) == (invoice_id, "xendit", Decimal("250000"))
    assert ledger.balance(customer) == Decimal("250000")
    assert LedgerEntry.objects.filter(account=customer, kind=LedgerEntry.Kind.PAYMENT).count() == 1
