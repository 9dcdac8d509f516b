"""The customer pays on the provider's own page (Snap's redirect_url, Xendit's invoice_url): paying there
notifies the panel, which credits the payment, and sends the customer back to the checkout's return URL,
Midtrans with order_id, status_code and transaction_status appended. (Over real HTTP, as a browser would,
without following the redirect back to the test server.)"""

from __future__ import annotations

import re
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from billing import ledger
from billing.models import Checkout

from .conftest import return_url

pytestmark = pytest.mark.django_db(transaction=True)


def _press(page_url: str, button: str) -> requests.Response:
    page = requests.get(page_url, timeout=10)
    assert page.status_code == 200
    forms = dict(
        (label, action)
        for action, label in re.findall(
            r"<form method='post' action='([^']+)'><button>([^<]+)</button>", page.text
        )
    )
    assert button in forms, page.text
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(page_url))
    return requests.post(origin + forms[button], allow_redirects=False, timeout=30)


def test_paying_on_the_snap_page_credits_and_returns_to_the_finish_url(customer, midtrans, top_up):
    checkout = top_up(customer, "midtrans", "150000")
    page = requests.get(checkout.checkout_url, timeout=10)
    assert "150,000" in page.text and checkout.reference in page.text and "Cancel" in page.text

    back = _press(checkout.checkout_url, "Pay")

    assert back.status_code == 303
    location = urlsplit(back.headers["Location"])
    assert back.headers["Location"].startswith(return_url(checkout) + "&")
    assert parse_qs(location.query) == {
        "checkout": [checkout.reference],
        "order_id": [checkout.reference],
        "status_code": ["200"],
        "transaction_status": ["settlement"],
    }
    assert [n.answer for n in midtrans.notifications] == [200]
    checkout.refresh_from_db()
    assert checkout.status == Checkout.Status.PAID
    assert ledger.balance(customer) == Decimal("150000")
    assert "settlement" in requests.get(checkout.checkout_url, timeout=10).text  # no Pay button any more


def test_cancelling_on_the_snap_page_fails_the_checkout(customer, midtrans, top_up):
    checkout = top_up(customer, "midtrans")

    back = _press(checkout.checkout_url, "Cancel")

    assert parse_qs(urlsplit(back.headers["Location"]).query)["transaction_status"] == ["cancel"]
    checkout.refresh_from_db()
    assert (checkout.status, checkout.status_reason) == (Checkout.Status.FAILED, "cancel")
    assert ledger.balance(customer) == 0


def test_paying_on_the_xendit_page_credits_and_returns_to_the_success_url(customer, xendit, top_up):
    checkout = top_up(customer, "xendit", "250000")
    assert "250,000" in requests.get(checkout.checkout_url, timeout=10).text

    back = _press(checkout.checkout_url, "Pay")

    assert back.status_code == 303 and back.headers["Location"] == return_url(checkout)
    assert [n.answer for n in xendit.notifications] == [200]
    checkout.refresh_from_db()
    assert checkout.status == Checkout.Status.PAID
    assert ledger.balance(customer) == Decimal("250000")


def test_an_expired_xendit_invoice_cannot_be_paid(customer, xendit, top_up):
    checkout = top_up(customer, "xendit")
    xendit.expire(checkout.reference)
    page = requests.get(checkout.checkout_url, timeout=10)
    assert "expired" in page.text and "<button>" not in page.text
    checkout.refresh_from_db()
    assert checkout.status == Checkout.Status.EXPIRED


@pytest.mark.parametrize("provider", ["midtrans", "xendit"])
def test_with_a_live_server_the_notification_is_a_real_http_post(
    request, live_server, customer, top_up, provider
):
    server = request.getfixturevalue(provider)
    server.deliver_to(live_server.url)
    checkout = top_up(customer, provider, "70000")

    _press(checkout.checkout_url, "Pay")

    (notification,) = server.notifications
    assert notification.url == f"{live_server.url}/billing/webhooks/{provider}/"
    assert notification.answer == 200
    checkout.refresh_from_db()
    assert checkout.status == Checkout.Status.PAID
    assert ledger.balance(customer) == Decimal("70000")
