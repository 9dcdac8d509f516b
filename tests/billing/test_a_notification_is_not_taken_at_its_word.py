"""A notification only says when to look: the provider's status API decides. A correctly signed
notification saying "settlement" (or PAID) while the status API says otherwise credits nothing."""

from __future__ import annotations

import pytest

from billing import ledger
from billing.models import Checkout, Payment

pytestmark = pytest.mark.django_db


def _nothing_credited(customer, checkout) -> None:
    checkout.refresh_from_db()
    assert checkout.status == Checkout.Status.PENDING
    assert not Payment.objects.exists() and ledger.balance(customer) == 0


def test_a_midtrans_settlement_notification_while_the_status_api_says_pending(customer, midtrans, top_up):
    checkout = top_up(customer, "midtrans")
    midtrans.choose(checkout.reference)  # pending at Midtrans

    lying = midtrans.notify(checkout.reference, transaction_status="settlement")

    assert lying.json()["transaction_status"] == "settlement" and lying.json()["status_code"] == "200"
    assert lying.answer == 200
    assert midtrans.received("GET", f"/v2/{checkout.reference}/status")[-1].reply()["transaction_status"] == (
        "pending"
    )
    _nothing_credited(customer, checkout)


def test_a_midtrans_settlement_notification_of_a_transaction_the_status_api_does_not_know(
    customer, midtrans, top_up
):
    checkout = top_up(customer, "midtrans")
    midtrans.choose(checkout.reference, notify=False)
    midtrans.set_status(checkout.reference, "")  # the status API answers 404

    assert midtrans.notify(checkout.reference, transaction_status="settlement").answer == 200
    _nothing_credited(customer, checkout)


def test_a_xendit_paid_callback_while_the_invoice_is_pending(customer, xendit, top_up):
    checkout = top_up(customer, "xendit")

    lying = xendit.notify(checkout.reference, status="PAID", paid_amount=150000)

    assert lying.answer == 200
    assert xendit.received("GET", "/v2/invoices/")[-1].reply()["status"] == "PENDING"
    _nothing_credited(customer, checkout)
