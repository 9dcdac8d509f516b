"""Xendit made the invoice but its answer never reached the panel (the process died after asking): the
checkout has no invoice id. Its callback, or the poll, finds the invoice by its external_id (our
reference), credits the payment, and records the invoice id."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import checkouts, ledger
from billing.models import Checkout, Payment

pytestmark = pytest.mark.django_db


def _answer_lost(checkout) -> None:
    Checkout.objects.filter(pk=checkout.pk).update(provider_id="")


def test_the_callback_finds_the_invoice_by_its_external_id(customer, xendit, top_up):
    checkout = top_up(customer, "xendit", "90000")
    invoice_id = checkout.provider_id
    _answer_lost(checkout)

    xendit.pay(checkout.reference)

    (lookup,) = xendit.received("GET", "/v2/invoices")
    assert lookup.path == "/v2/invoices" and lookup.query == {"external_id": [checkout.reference]}
    checkout.refresh_from_db()
    assert checkout.status == Checkout.Status.PAID
    assert checkout.provider_id == invoice_id == checkout.transaction_id
    assert Payment.objects.get(account=customer).reference == invoice_id
    assert ledger.balance(customer) == Decimal("90000")


def test_the_poll_finds_it_too_and_an_invoice_xendit_never_made_stays_pending(customer, xendit, top_up):
    paid = top_up(customer, "xendit", "90000")
    never_made = top_up(customer, "xendit", "10000")
    for checkout in (paid, never_made):
        _answer_lost(checkout)
    with xendit._lock:  # Xendit never made this one at all
        del xendit.invoices[xendit.invoice(never_made.reference).id]
    xendit.pay(paid.reference, notify=False)

    counts = checkouts.poll(timezone.now() + timedelta(minutes=2))

    assert counts == {"asked": 2, "paid": 1, "closed": 0, "errors": 0}
    paid.refresh_from_db()
    never_made.refresh_from_db()
    assert paid.status == Checkout.Status.PAID and paid.provider_id
    assert never_made.status == Checkout.Status.PENDING and never_made.provider_id == ""
    assert ledger.balance(customer) == Decimal("90000")
