"""A checkout for an open invoice asks the provider for what the invoice still needs; once paid, the credit
pays the account's open invoices oldest first, as any payment does. Paying again while that checkout is
pending reuses it; an invoice that is not open cannot be paid."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import checkouts, ledger
from billing.errors import BillingError
from billing.invoices import Line, issue_invoice
from billing.models import Checkout, Invoice, InvoiceLine

from .conftest import return_url

pytestmark = pytest.mark.django_db


def _invoice(account, amount: str, days_ago: int) -> Invoice:
    line = Line(kind=InvoiceLine.Kind.MANUAL, description="Managed backups", unit_price=Decimal(amount))
    return issue_invoice(account, [line], timezone.now() - timedelta(days=days_ago))


def _pay_invoice(account, provider: str, invoice: Invoice) -> Checkout:
    return checkouts.start(account, provider, invoice=invoice, return_url=return_url)


@pytest.mark.parametrize("provider", ["midtrans", "xendit"])
def test_the_checkout_asks_for_the_invoice_and_its_payment_pays_it(request, customer, provider):
    server = request.getfixturevalue(provider)
    invoice = _invoice(customer, "111000", days_ago=2)
    assert invoice.status == Invoice.Status.OPEN

    checkout = _pay_invoice(customer, provider, invoice)

    assert (checkout.purpose, checkout.invoice, checkout.amount) == (
        Checkout.Purpose.INVOICE,
        invoice,
        invoice.total,
    )
    sent = server.created(checkout.reference)
    asked = sent["transaction_details"]["gross_amount"] if provider == "midtrans" else sent["amount"]
    assert asked == int(invoice.total)
    assert invoice.number in (
        sent["item_details"][0]["name"] if provider == "midtrans" else sent["description"]
    )
    server.pay(checkout.reference)
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID and invoice.paid_at is not None
    assert ledger.balance(customer) == 0


def test_the_credit_pays_the_oldest_open_invoice_first(customer, midtrans):
    older = _invoice(customer, "100000", days_ago=20)
    newer = _invoice(customer, "300000", days_ago=5)

    checkout = _pay_invoice(customer, "midtrans", newer)
    assert checkout.amount == newer.total
    midtrans.pay(checkout.reference)

    older.refresh_from_db()
    newer.refresh_from_db()
    assert older.status == Invoice.Status.PAID
    assert newer.status == Invoice.Status.OPEN  # 200000 of credit is not enough for it
    assert ledger.balance(customer) == Decimal("-100000")


def test_paying_again_while_the_checkout_is_pending_reuses_it(customer, xendit):
    invoice = _invoice(customer, "111000", days_ago=1)
    first = _pay_invoice(customer, "xendit", invoice)
    again = _pay_invoice(customer, "xendit", invoice)
    assert again.pk == first.pk
    assert len(xendit.received("POST", "/v2/invoices")) == 1


def test_an_invoice_that_is_not_open_cannot_be_paid(customer, other_customer, midtrans):
    invoice = _invoice(customer, "111000", days_ago=1)
    midtrans.pay(_pay_invoice(customer, "midtrans", invoice).reference)
    with pytest.raises(BillingError):
        _pay_invoice(customer, "midtrans", invoice)
    with pytest.raises(BillingError):  # nor another customer's
        _pay_invoice(other_customer, "midtrans", _invoice(customer, "5000", days_ago=1))
    assert Checkout.objects.count() == 1
