""" "Pay now" on an open invoice (POST billing/invoices/<pk>/pay/, `billing-invoice-pay`): a checkout at the
chosen provider for what the invoice still needs, and off to its payment page. Only the customer's own
open invoices (404 otherwise); what goes wrong is said on the invoice page and changes nothing."""

from decimal import Decimal

import pytest
from django.urls import reverse

from billing import invoices, ledger
from billing.models import Checkout, Invoice

pytestmark = pytest.mark.django_db


def invoice_for(account, price: str = "150000") -> Invoice:
    line = invoices.Line(kind="manual", description="Setup fee", unit_price=Decimal(price))
    return invoices.issue_invoice(account, [line])


def pay_url(invoice: Invoice) -> str:
    return reverse("billing-invoice-pay", args=[invoice.pk])


def test_pay_now_starts_a_checkout_for_the_invoice_and_the_payment_pays_it(client, customer, xendit):
    invoice = invoice_for(customer)
    client.force_login(customer)
    assert pay_url(invoice) == f"/billing/invoices/{invoice.pk}/pay/"
    response = client.post(pay_url(invoice), {"provider": "xendit"})
    checkout = Checkout.objects.get(account=customer)
    assert response.status_code == 302 and response["Location"] == checkout.checkout_url
    assert (checkout.purpose, checkout.invoice, checkout.amount) == ("invoice", invoice, Decimal("150000"))
    assert xendit.created(checkout.reference)["description"] == f"Invoice {invoice.number}"
    # Asked again while that checkout is pending: the same payment page.
    assert client.post(pay_url(invoice), {"provider": "xendit"})["Location"] == checkout.checkout_url
    assert Checkout.objects.count() == 1
    xendit.pay(checkout.reference)
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID and ledger.balance(customer) == 0
    page = client.get(f"/billing/checkouts/{checkout.pk}/").content.decode()
    assert "Payment received" in page and invoice.number in page


def test_without_a_provider_named_the_first_configured_is_used(client, customer, midtrans, xendit):
    invoice = invoice_for(customer)
    client.force_login(customer)
    response = client.post(pay_url(invoice))
    assert response.status_code == 302
    assert Checkout.objects.get().provider == "midtrans" and response["Location"].startswith(midtrans.url)


def test_only_the_customers_own_open_invoices_can_be_paid(client, customer, other_customer, midtrans):
    theirs = invoice_for(other_customer)
    paid = invoice_for(customer)
    invoices.void_invoice(paid)
    client.force_login(customer)
    assert client.post(pay_url(theirs), {"provider": "midtrans"}).status_code == 404
    assert client.post(pay_url(paid), {"provider": "midtrans"}).status_code == 404
    assert client.post("/billing/invoices/999999/pay/", {"provider": "midtrans"}).status_code == 404
    assert client.get(pay_url(invoice_for(customer))).status_code == 405
    assert not Checkout.objects.exists() and not midtrans.requests
    client.logout()
    response = client.post(pay_url(theirs), {"provider": "midtrans"})
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_with_no_provider_the_invoice_page_says_to_pay_by_bank_transfer(client, customer):
    invoice = invoice_for(customer)
    client.force_login(customer)
    response = client.post(pay_url(invoice), {"provider": "midtrans"})
    assert response.status_code == 302 and response["Location"] == f"/billing/invoices/{invoice.pk}/"
    page = client.get(response["Location"]).content.decode()
    assert "Online payment is not available: please pay by bank transfer." in page
    assert not Checkout.objects.exists()


@pytest.mark.parametrize(
    "provider, message",
    [
        ("paypal", "This payment provider is not configured."),
        ("midtrans-outage", "Midtrans could not start the payment. Please try again in a moment."),
    ],
)
def test_a_refusal_is_said_on_the_invoice_page_and_changes_nothing(
    client, customer, midtrans, provider, message
):
    invoice = invoice_for(customer)
    client.force_login(customer)
    if provider == "midtrans-outage":
        with midtrans.outage():
            response = client.post(pay_url(invoice), {"provider": "midtrans"})
    else:
        response = client.post(pay_url(invoice), {"provider": provider})
    assert response.status_code == 302 and response["Location"] == f"/billing/invoices/{invoice.pk}/"
    assert message in client.get(response["Location"]).content.decode()
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN and ledger.balance(customer) == Decimal("-150000")
    assert not Checkout.objects.filter(status=Checkout.Status.PENDING).exists()


def test_the_billing_page_has_a_pay_link_for_each_open_invoice(client, customer):
    open_invoice = invoice_for(customer)
    voided = invoices.void_invoice(invoice_for(customer, "20000"))
    client.force_login(customer)
    page = client.get("/billing/").content.decode()
    assert (
        f'href="/billing/invoices/{open_invoice.pk}/" aria-label="Pay invoice {open_invoice.number}"' in page
    )
    assert f"Pay invoice {voided.number}" not in page
