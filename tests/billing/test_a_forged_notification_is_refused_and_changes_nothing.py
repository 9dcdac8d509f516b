"""A notification not signed by the provider (Midtrans: a signature_key made with another key; Xendit: a
wrong or missing x-callback-token) is answered 403, and nothing changes: the provider is not even asked."""

from __future__ import annotations

import hashlib
import json

import pytest

from billing import ledger
from billing.models import Checkout, Payment

pytestmark = pytest.mark.django_db

WEBHOOK = "/billing/webhooks/{}/"


def _nothing_changed(customer, checkout) -> None:
    checkout.refresh_from_db()
    assert checkout.status == Checkout.Status.PENDING and checkout.checked_at is None
    assert not Payment.objects.exists()
    assert ledger.balance(customer) == 0


def test_a_midtrans_notification_with_a_forged_signature_is_a_403(customer, midtrans, top_up):
    checkout = top_up(customer, "midtrans")
    midtrans.pay(checkout.reference, notify=False)  # paid at Midtrans: only the signature is wrong

    forged = midtrans.notify(checkout.reference, forge=True)

    assert forged.answer == 403
    assert not midtrans.received("GET", "/v2/")
    _nothing_changed(customer, checkout)


def test_a_midtrans_notification_whose_fields_do_not_match_its_signature_is_a_403(
    client, customer, midtrans, top_up
):
    checkout = top_up(customer, "midtrans", "150000")
    midtrans.pay(checkout.reference, notify=False)
    body = midtrans.status_body(midtrans.transaction(checkout.reference))
    body["gross_amount"] = "1500000.00"  # signed for 150000.00
    response = client.post(WEBHOOK.format("midtrans"), json.dumps(body), content_type="application/json")
    assert response.status_code == 403
    # A signature over the right fields with another server key.
    fields = body["order_id"] + body["status_code"] + body["gross_amount"]
    body["signature_key"] = hashlib.sha512((fields + "SB-Mid-server-other").encode()).hexdigest()
    response = client.post(WEBHOOK.format("midtrans"), json.dumps(body), content_type="application/json")
    assert response.status_code == 403
    for broken in (b"not json", b"[]", json.dumps({"order_id": checkout.reference}).encode()):
        response = client.post(WEBHOOK.format("midtrans"), broken, content_type="application/json")
        assert response.status_code == 403
    _nothing_changed(customer, checkout)


def test_a_xendit_callback_with_a_wrong_or_missing_token_is_a_403(client, customer, xendit, top_up):
    checkout = top_up(customer, "xendit")
    xendit.pay(checkout.reference, notify=False)

    assert xendit.notify(checkout.reference, forge=True).answer == 403
    body = json.dumps(xendit.callback_body(xendit.invoice(checkout.reference)))
    response = client.post(WEBHOOK.format("xendit"), body, content_type="application/json")
    assert response.status_code == 403
    response = client.post(
        WEBHOOK.format("xendit"), body, content_type="application/json", headers={"x-callback-token": ""}
    )
    assert response.status_code == 403
    assert not xendit.received("GET", "/v2/invoices")
    _nothing_changed(customer, checkout)


def test_a_provider_that_is_not_configured_is_a_404_and_only_post_is_taken(
    client, customer, midtrans, settings
):
    settings.XENDIT_SECRET_KEY = ""
    assert client.post(WEBHOOK.format("xendit"), "{}", content_type="application/json").status_code == 404
    assert client.post(WEBHOOK.format("paypal"), "{}", content_type="application/json").status_code == 404
    assert client.get(WEBHOOK.format("midtrans")).status_code == 405


def test_a_signed_notification_of_an_order_we_do_not_know_is_a_200(client, midtrans):
    """Midtrans's dashboard sends a test notification of an order of its own: answered 200, so that it
    stops retrying, and nothing happens."""
    body = {"order_id": "payment_notif_test_G123456789_1", "status_code": "200", "gross_amount": "10000.00"}
    fields = body["order_id"] + body["status_code"] + body["gross_amount"]
    body |= {
        "transaction_status": "settlement",
        "signature_key": hashlib.sha512((fields + midtrans.key).encode()).hexdigest(),
    }
    response = client.post(WEBHOOK.format("midtrans"), json.dumps(body), content_type="application/json")
    assert response.status_code == 200
    assert response.json() == {"status": "unknown reference"}
    assert not Payment.objects.exists()
