"""A customer who owes an invoice and whose server is suspended tops up on the billing page: picks what is
owed with one click and a provider, pays on the provider's hosted page (its Pay button), comes back to the
checkout page while the provider's notification is still on its way ("waiting for the payment
confirmation"), and sees the payment received appear without reloading once the notification reaches the
panel's webhook, with the servers being started again. In English with Midtrans and in Indonesian with
Xendit; screenshots of the billing page and the checkout page, pending and paid, at 1280 and 390 px."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from billing import ledger, subscriptions
from billing.models import Checkout, Invoice, Subscription
from tests import factories
from tests.billing.conftest import midtrans, xendit  # noqa: F401
from tests.e2e import screens
from tests.e2e.screens import DESKTOP

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "kopi tubruk 2026!"
# Boxes whose content must stay inside them (as tests/e2e/test_every_customer_page_fits_... checks).
BOXES = ".card__header, .card__body, .option-card, .chip, .alert, .facts, .page-header, .table-wrap"


def shoot(page, directory, name: str) -> None:
    screens.shoot(page, directory, name, BOXES)


@pytest.mark.parametrize("language, provider", [("en", "midtrans"), ("id", "xendit")])
def test_a_customer_tops_up_through_a_provider_and_sees_it_paid(
    browser, live_server, request, screenshot_dir, language, provider
):
    server = request.getfixturevalue(provider)
    server.deliver_to(live_server.url)
    region, _plan, image = factories.make_catalog()
    plan = factories.make_plan(slug="kecil", price_monthly=Decimal("150000"))
    customer = factories.make_user(email=f"budi.{language}@example.com", password=PASSWORD, language=language)
    subscriptions.open_subscription(customer, plan, str(uuid.uuid4()), "toko-budi.example.com")
    invoice = Invoice.objects.get(account=customer)
    Subscription.objects.filter(account=customer).update(
        status=Subscription.Status.SUSPENDED, suspended_at=timezone.now()
    )

    context = browser.new_context(viewport=DESKTOP, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("input[name=username]", customer.email)
        page.fill("input[name=password]", PASSWORD)
        page.locator("form button[type=submit]").last.click()
        expect(page).to_have_url(re.compile(r"/servers/"))

        page.goto(f"{live_server.url}/billing/")
        expect(page.locator("html")).to_have_attribute("lang", language)
        amount = page.locator("#top-up input[name=amount]")
        amount.fill("")
        page.locator("#top-up .top-up__quick-amount").first.click()  # what is owed, without a reload
        expect(amount).to_have_value("150000")
        page.locator(f"label[for=top-up-provider-{provider}]").click()
        expect(page.locator(f"#top-up-provider-{provider}")).to_be_checked()
        shoot(page, screenshot_dir, f"top-up-billing-{language}")

        # The provider's notification is late: the customer is back before it arrives.
        server.drop_notifications = True
        page.locator("#top-up button[type=submit]").click()
        expect(page).to_have_url(re.compile(re.escape(server.url)))
        checkout = Checkout.objects.get(account=customer)
        assert checkout.amount == Decimal("150000") and checkout.provider == provider
        page.get_by_role("button", name="Pay", exact=True).click()

        expect(page).to_have_url(re.compile(rf"/billing/checkouts/{checkout.pk}/"))
        status = page.locator("#checkout-status")
        expect(status).to_have_attribute("data-status", "pending")
        expect(page.locator(".page-header")).to_contain_text("Rp150,000" if language == "en" else "Rp150.000")
        page.evaluate("window.stillTheSamePage = true")
        shoot(page, screenshot_dir, f"top-up-pending-{language}")

        # The provider tries the notification again; it reaches the webhook and the page shows it.
        server.drop_notifications = False
        assert server.resend().answer == 200
        expect(status).to_have_attribute("data-status", "paid", timeout=15_000)
        expect(status.locator(".alert--success")).to_be_visible()  # the servers are started again
        expect(status.locator(f"a[href='/billing/invoices/{invoice.pk}/']")).to_have_text(invoice.number)
        assert page.evaluate("window.stillTheSamePage") is True  # no reload
        assert status.get_attribute("hx-trigger") is None  # polling stopped
        shoot(page, screenshot_dir, f"top-up-paid-{language}")

        assert ledger.balance(customer) == 0
        invoice.refresh_from_db()
        assert invoice.status == Invoice.Status.PAID
        assert Subscription.objects.get(account=customer).status == Subscription.Status.ACTIVE
        page.goto(f"{live_server.url}/billing/")
        expect(page.locator(f"#checkouts a[href='/billing/checkouts/{checkout.pk}/']")).to_be_visible()
    finally:
        context.close()
