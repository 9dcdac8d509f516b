"""A provider that cannot be reached, or refuses the request, makes `checkouts.start` raise
ProviderUnavailable (the customer is told to try again) and leaves the checkout failed with the reason;
nothing is charged. A notification whose status check cannot be made is answered 503, so that the provider
sends it again."""

from __future__ import annotations

import socket
from decimal import Decimal

import pytest

from billing import checkouts, ledger
from billing.models import Checkout

pytestmark = pytest.mark.django_db


def _only_checkout(customer) -> Checkout:
    (checkout,) = Checkout.objects.filter(account=customer)
    return checkout


@pytest.mark.parametrize("provider", ["midtrans", "xendit"])
def test_a_provider_answering_503_fails_the_checkout(request, customer, top_up, provider):
    server = request.getfixturevalue(provider)
    with server.outage(), pytest.raises(checkouts.ProviderUnavailable) as raised:
        top_up(customer, provider)
    assert "could not start the payment" in raised.value.message
    checkout = _only_checkout(customer)
    assert checkout.status == Checkout.Status.FAILED
    assert checkout.status_reason.endswith("HTTP 503, not JSON")
    assert checkout.closed_at is not None and checkout.checkout_url == ""


def test_a_provider_that_does_not_answer_at_all_fails_the_checkout(customer, midtrans, top_up, settings):
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings.MIDTRANS_SNAP_URL = f"http://127.0.0.1:{port}"
    with pytest.raises(checkouts.ProviderUnavailable):
        top_up(customer, "midtrans")
    checkout = _only_checkout(customer)
    assert checkout.status == Checkout.Status.FAILED
    assert checkout.status_reason == f"POST http://127.0.0.1:{port}/snap/v1/transactions: ConnectionError"


@pytest.mark.parametrize("provider", ["midtrans", "xendit"])
def test_a_wrong_key_is_the_providers_401_and_fails_the_checkout(
    request, customer, top_up, settings, provider
):
    request.getfixturevalue(provider)
    setattr(settings, "MIDTRANS_SERVER_KEY" if provider == "midtrans" else "XENDIT_SECRET_KEY", "wrong")
    with pytest.raises(checkouts.ProviderUnavailable):
        top_up(customer, provider)
    checkout = _only_checkout(customer)
    assert checkout.status == Checkout.Status.FAILED
    assert "HTTP 401" in checkout.status_reason


def test_a_notification_while_the_status_api_is_down_is_a_503_and_its_retry_credits(customer, xendit, top_up):
    checkout = top_up(customer, "xendit", "40000")
    with xendit.outage():
        xendit.pay(checkout.reference)  # the callback arrives, but the invoice cannot be fetched
    (first,) = xendit.notifications
    assert first.answer == 503
    checkout.refresh_from_db()
    assert checkout.status == Checkout.Status.PENDING and ledger.balance(customer) == 0

    assert xendit.resend().answer == 200  # Xendit retries

    checkout.refresh_from_db()
    assert checkout.status == Checkout.Status.PAID
    assert ledger.balance(customer) == Decimal("40000")
