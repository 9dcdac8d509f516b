"""The whole path from "I need to pay" to "my server is running again", without staff, through each
provider: a customer's invoice is overdue past its grace period and the billing run suspended their
running server (the worker stopped its domain). They open the invoice, press "Pay now" for the provider,
pay on the provider's hosted page (the local server that speaks its documented API,
tests/payment_provider_server.py), come back to the checkout page, which shows the payment received
without a reload once the provider's signed notification reached the webhook and its status API
confirmed it; the server is running again within a minute. Then the ledger, the invoice, the checkout and
the payment agree: one payment of exactly the invoice's total, referenced by the provider's transaction
id, that paid the invoice, and a balance of zero."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from billing import dunning, ledger
from billing.models import Checkout, Invoice, LedgerEntry, Payment, Subscription
from hypervisor import connection
from panel.models import Server
from panel.servers import actions
from tests import factories
from tests.billing.conftest import midtrans, xendit  # noqa: F401
from tests.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "kopi tubruk 2026!"


def domain_is_active(host, server) -> bool:
    return bool(connection.connection(host.uri).lookupByUUIDString(str(server.pk)).isActive())


@pytest.mark.parametrize("provider", ["midtrans", "xendit"])
def test_an_overdue_suspended_customer_pays_an_invoice_and_the_server_runs_again(
    page, live_server, celery_worker, request, screenshot_dir, provider
):
    gateway = request.getfixturevalue(provider)
    gateway.deliver_to(live_server.url)
    region, plan, image = factories.make_catalog()
    host = factories.make_host(region=region)
    factories.make_pool(region, cidr="198.51.100.0/28")
    customer = factories.make_user(email=f"sari.{provider}@example.com", password=PASSWORD)

    # Ordered and running; its first invoice is open.
    server = actions.order_server(
        customer, name="toko-sari", plan=plan, image=image, region=region, password="sate ayam 2026!"
    )
    wait_for(lambda: Server.objects.get(pk=server.pk).status == Server.Status.RUNNING, 60, message="created")
    invoice = Invoice.objects.get(account=customer, status=Invoice.Status.OPEN)
    assert invoice.total > 0 and invoice.subtotal + invoice.tax == invoice.total

    # The invoice is left unpaid past its due date and the grace period: the billing run suspends.
    now = timezone.now()
    Invoice.objects.filter(pk=invoice.pk).update(
        issued_at=now - timedelta(days=12), due_at=now - timedelta(days=5)
    )
    dunning.dun(now)
    wait_for(
        lambda: Server.objects.get(pk=server.pk).status == Server.Status.SUSPENDED, 60, message="suspended"
    )
    assert not domain_is_active(host, server)
    assert Subscription.objects.get(account=customer).status == Subscription.Status.SUSPENDED

    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", customer.email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("form button[type=submit]").last.click()
    expect(page).to_have_url(re.compile(r"/servers/"))

    # The invoice says it is open and offers the provider.
    page.goto(f"{live_server.url}/billing/invoices/{invoice.pk}/")
    pay = page.locator(f"form[action='/billing/invoices/{invoice.pk}/pay/'] button[value={provider}]")
    expect(pay).to_be_visible()
    page.screenshot(path=str(screenshot_dir / f"pay-invoice-{provider}.png"), full_page=True)
    pay.click()

    # The provider's hosted page; the customer pays there and is sent back.
    expect(page).to_have_url(re.compile(re.escape(gateway.url)))
    checkout = Checkout.objects.get(account=customer)
    assert (checkout.purpose, checkout.invoice_id, checkout.amount) == ("invoice", invoice.pk, invoice.total)
    paid_at = timezone.now()
    page.get_by_role("button", name="Pay", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/billing/checkouts/{checkout.pk}/"))
    status = page.locator("#checkout-status")
    expect(status).to_have_attribute("data-status", "paid", timeout=15_000)
    page.screenshot(path=str(screenshot_dir / f"paid-invoice-{provider}.png"), full_page=True)

    # Running again within a minute of the payment.
    wait_for(lambda: Server.objects.get(pk=server.pk).status == Server.Status.RUNNING, 60, message="resumed")
    assert domain_is_active(host, server)
    assert timezone.now() - paid_at < timedelta(minutes=1)
    page.goto(f"{live_server.url}/servers/{server.pk}/")
    expect(page.locator("#server-status")).to_contain_text("Running", timeout=20_000)

    # Ledger, invoice, checkout and payment agree.
    checkout.refresh_from_db()
    invoice.refresh_from_db()
    payment = Payment.objects.get(account=customer)
    assert checkout.status == Checkout.Status.PAID and checkout.payment_id == payment.pk
    assert payment.reference == checkout.transaction_id and payment.method == provider
    assert payment.amount == invoice.total == checkout.amount
    assert invoice.status == Invoice.Status.PAID and invoice.paid_at is not None
    assert ledger.balance(customer) == Decimal(0)
    kinds = list(LedgerEntry.objects.filter(account=customer).values_list("kind", "amount"))
    assert kinds == [("charge", -invoice.total), ("payment", invoice.total)]
    assert Subscription.objects.get(account=customer).status == Subscription.Status.ACTIVE
    # The provider was asked for the status before anything was credited, and once is enough.
    assert gateway.notifications, "the provider notified the panel"
