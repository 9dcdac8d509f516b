"""The checkout page (billing/checkouts/<pk>/), where the provider sends the customer back: what is paid for,
the amount and the provider, and the status, live: its htmx fragment polls every 2 s while the payment is
pending and stops once it is paid, expired or failed. The page never asks the provider itself: a pending
checkout nobody asked about for a few seconds goes to a worker (billing.tasks.refresh_checkout), once
until the worker has asked. Only the customer's own checkouts (404 otherwise)."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import checkouts, invoices, ledger, subscriptions
from billing.models import Checkout, Invoice, Subscription

pytestmark = pytest.mark.django_db

REFRESH = "billing.tasks.refresh_checkout"
POLLING = 'hx-trigger="every 2s"'


def return_url(checkout: Checkout) -> str:
    return f"http://testserver/billing/checkouts/{checkout.pk}/"


def top_up(account, amount: str = "200000", provider: str = "midtrans") -> Checkout:
    return checkouts.start(account, provider, amount=Decimal(amount), return_url=return_url)


@pytest.fixture
def page(client, django_capture_on_commit_callbacks):
    """page(checkout, fragment=False): the checkout page (or its live part) as the customer gets it, with
    what the request hands the workers sent once it commits."""

    def get(checkout: Checkout, fragment: bool = False) -> str:
        url = f"/billing/checkouts/{checkout.pk}/" + ("status/" if fragment else "")
        with django_capture_on_commit_callbacks(execute=True):
            response = client.get(url, **({"HTTP_HX_REQUEST": "true"} if fragment else {}))
        assert response.status_code == 200
        return response.content.decode()

    return get


def asked_long_ago(checkout: Checkout) -> None:
    """Time passes: the last answer is older than the page's few seconds."""
    Checkout.objects.filter(pk=checkout.pk).update(checked_at=timezone.now() - timedelta(seconds=30))


def test_a_pending_checkout_polls_and_a_worker_asks_the_provider_once(
    client, page, customer, midtrans, billing_queue
):
    checkout = top_up(customer)
    client.force_login(customer)
    full = page(checkout)
    assert "Top-up" in full and "Rp200,000" in full and "Midtrans" in full
    assert "Waiting for the payment confirmation" in full
    assert f'href="{checkout.checkout_url}"' in full  # back to the provider's page
    assert POLLING in full and f'hx-get="/billing/checkouts/{checkout.pk}/status/"' in full
    # Never asked: a worker asks, once however often the page polls meanwhile.
    assert billing_queue.sent == [(REFRESH, (checkout.pk,))]
    fragment = page(checkout, fragment=True)
    assert fragment.lstrip().startswith("<section") and "<html" not in fragment and POLLING in fragment
    assert billing_queue.sent == [(REFRESH, (checkout.pk,))]
    status_calls = len(midtrans.received("GET", "/v2/"))
    assert status_calls == 0  # the page itself never asked
    assert billing_queue.run() == ["pending"]  # nothing chosen at Midtrans yet
    assert len(midtrans.received("GET", "/v2/")) == 1
    page(checkout, fragment=True)  # just asked: nothing more to do
    assert billing_queue.sent == []
    # The customer paid but the notification got lost: once the answer is old, the page has it asked.
    midtrans.pay(checkout.reference, notify=False)
    asked_long_ago(checkout)
    assert POLLING in page(checkout, fragment=True)
    assert billing_queue.sent == [(REFRESH, (checkout.pk,))]
    assert billing_queue.run() == ["paid"]
    fragment = page(checkout, fragment=True)
    assert "Payment received" in fragment and POLLING not in fragment  # polling stops
    assert "Your balance is now <strong>Rp200,000</strong>." in fragment
    assert billing_queue.sent == []


def test_a_page_left_open_for_long_leaves_the_asking_to_the_periodic_poll(
    client, page, customer, midtrans, billing_queue
):
    checkout = top_up(customer)
    Checkout.objects.filter(pk=checkout.pk).update(created_at=timezone.now() - timedelta(minutes=31))
    asked_long_ago(checkout)
    client.force_login(customer)
    assert POLLING in page(checkout, fragment=True)  # still follows what the poll finds
    assert billing_queue.sent == []


def test_a_paid_checkout_says_what_it_paid_and_that_the_servers_start_again(
    client, page, customer, catalog, xendit
):
    subscriptions.open_subscription(customer, catalog["plan"], str(uuid.uuid4()), "web1.example.com")
    invoice = Invoice.objects.get(account=customer)
    Subscription.objects.filter(account=customer).update(
        status=Subscription.Status.SUSPENDED, suspended_at=timezone.now()
    )
    checkout = checkouts.start(customer, "xendit", invoice=invoice, return_url=return_url)
    xendit.pay(checkout.reference)
    checkout.refresh_from_db()
    assert checkout.status == Checkout.Status.PAID
    client.force_login(customer)
    full = page(checkout)
    assert f"Payment of invoice {invoice.number}" in full and "Xendit" in full
    assert "Payment received" in full and "It paid this invoice:" in full
    assert f'href="/billing/invoices/{invoice.pk}/">{invoice.number}</a>' in full
    assert "Your servers are being started again." in full
    assert "Your balance is now <strong>Rp0</strong>." in full
    # The billing page lists it among the online payments.
    billing = client.get("/billing/").content.decode()
    assert f'href="/billing/checkouts/{checkout.pk}/"' in billing and "badge--co-paid" in billing


def test_a_top_up_that_leaves_something_owed_says_so_and_starts_no_server(client, page, customer, midtrans):
    line = invoices.Line(kind="manual", description="Setup fee", unit_price=Decimal("500000"))
    invoices.issue_invoice(customer, [line])
    checkout = top_up(customer, "200000")
    midtrans.pay(checkout.reference)
    client.force_login(customer)
    full = page(checkout)
    assert "Payment received" in full and "You still owe <strong>Rp300,000</strong>." in full
    assert "It paid" not in full and "started again" not in full


@pytest.mark.parametrize("end", ["expire", "cancel"])
def test_an_expired_or_failed_checkout_says_so_and_offers_to_try_again(
    client, page, customer, midtrans, billing_queue, end
):
    checkout = top_up(customer, "150000")
    getattr(midtrans, end)(checkout.reference)
    checkout.refresh_from_db()
    assert checkout.status == ("expired" if end == "expire" else "failed")
    client.force_login(customer)
    full = page(checkout)
    assert POLLING not in full and not billing_queue.sent
    if end == "expire":
        assert "The payment expired" in full
    else:
        assert "The payment did not go through" in full
    assert "Nothing was added to your balance" in full
    assert 'action="/billing/top-up/"' in full and 'name="amount" value="150000"' in full
    assert 'name="provider" value="midtrans"' in full and "Try again" in full
    # Trying again is a new checkout at the provider.
    response = client.post("/billing/top-up/", {"amount": "150000", "provider": "midtrans"})
    again = Checkout.objects.exclude(pk=checkout.pk).get()
    assert response["Location"] == again.checkout_url and again.status == Checkout.Status.PENDING
    assert ledger.balance(customer) == 0


def test_trying_again_to_pay_an_invoice_posts_to_pay_now(client, page, customer, midtrans):
    line = invoices.Line(kind="manual", description="Setup fee", unit_price=Decimal("150000"))
    invoice = invoices.issue_invoice(customer, [line])
    checkout = checkouts.start(customer, "midtrans", invoice=invoice, return_url=return_url)
    midtrans.expire(checkout.reference)
    client.force_login(customer)
    full = page(checkout)
    assert f'action="/billing/invoices/{invoice.pk}/pay/"' in full and "Try again" in full
    invoices.void_invoice(invoice)
    full = page(checkout)
    assert f"Invoice {invoice.number} is no longer open." in full and "/pay/" not in full


def test_customers_never_see_another_customers_checkout(
    client, customer, other_customer, midtrans, billing_queue, django_capture_on_commit_callbacks
):
    theirs = top_up(other_customer)
    client.force_login(customer)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.get(f"/billing/checkouts/{theirs.pk}/").status_code == 404
        assert client.get(f"/billing/checkouts/{theirs.pk}/status/").status_code == 404
        assert client.get("/billing/checkouts/999999/").status_code == 404
    assert not billing_queue.sent  # nobody asks the provider about it for them
    assert f"/billing/checkouts/{theirs.pk}/" not in client.get("/billing/").content.decode()
    client.logout()
    assert client.get(f"/billing/checkouts/{theirs.pk}/").status_code == 302


def test_the_page_is_in_the_customers_language(client, page, customer, midtrans):
    customer.language = "id"
    customer.save(update_fields=["language"])
    checkout = top_up(customer, "1500000")
    client.force_login(customer)
    full = page(checkout)
    assert '<html lang="id">' in full and "Rp1.500.000" in full
    midtrans.pay(checkout.reference)
    assert "Rp1.500.000" in page(checkout, fragment=True)
