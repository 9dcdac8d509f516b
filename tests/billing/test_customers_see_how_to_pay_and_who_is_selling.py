"""Customers see how to pay: an open invoice shows the bank, the account number and holder, the amount and
the invoice number as the transfer's reference; the top-up section shows the account too; a paid invoice
does not. With no account set, pages say to contact support and show no empty bank fields. An invoice
shows who sells (name, address, NPWP) when that is set, and who buys."""

import re
from decimal import Decimal

import pytest

from billing import invoices, payments, seller
from billing.models import Checkout, Invoice
from billing.money import format_money
from tests import factories

pytestmark = pytest.mark.django_db

CONTACT_SUPPORT = "Please contact support"
PRICE = format_money(Decimal("150000"), "IDR")


def set_details(by, **values) -> None:
    seller.save_profile({name: values.get(name, "") for name in seller.FIELDS}, by=by)


def bank_account(by, **more) -> None:
    set_details(
        by,
        bank_name="Bank Central Asia",
        account_number="123-456-7890",
        account_holder="PT Contoh Hosting",
        payment_note="Write the invoice number in the transfer note.",
        **more,
    )


def invoice_for(account, price: str = "150000") -> Invoice:
    line = invoices.Line(kind="manual", description="Setup fee", unit_price=Decimal(price))
    return invoices.issue_invoice(account, [line])


def text(response) -> str:
    """The page's text without tags, spaces squeezed (labels and values sit in separate elements)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def test_an_open_invoice_shows_the_account_the_amount_and_its_number_as_the_reference(
    client, customer, admin_user
):
    bank_account(admin_user)
    invoice = invoice_for(customer)
    client.force_login(customer)
    page = text(client.get(f"/billing/invoices/{invoice.pk}/"))
    assert "How to pay" in page
    assert "Bank Bank Central Asia" in page
    assert "Account number 123-456-7890" in page
    assert "Account holder PT Contoh Hosting" in page
    assert f"Amount to transfer {PRICE}" in page
    assert f"Transfer reference {invoice.number}" in page
    assert f"Write {invoice.number} in the transfer's note" in page
    assert "Write the invoice number in the transfer note." in page
    assert CONTACT_SUPPORT not in page
    # Staff see the same on the staff address of the invoice.
    client.force_login(factories.make_user("staff"))
    page = text(client.get(f"/staff/invoices/{invoice.pk}/"))
    assert "Account number 123-456-7890" in page and f"Transfer reference {invoice.number}" in page


def test_a_paid_invoice_shows_no_payment_instructions(client, customer, admin_user):
    bank_account(admin_user)
    invoice = invoice_for(customer)
    payments.record_payment(customer, Decimal("150000"), "BCA-1")
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    client.force_login(customer)
    page = text(client.get(f"/billing/invoices/{invoice.pk}/"))
    assert "This invoice was paid on" in page
    assert "How to pay" not in page and "123-456-7890" not in page and "Transfer reference" not in page
    assert CONTACT_SUPPORT not in page


def test_the_top_up_section_shows_the_account_with_the_email_as_the_reference(client, customer, admin_user):
    bank_account(admin_user)
    invoice_for(customer)
    client.force_login(customer)
    page = text(client.get("/billing/"))
    assert "Pay by bank transfer" in page
    assert "Bank Bank Central Asia" in page
    assert "Account number 123-456-7890" in page
    assert "Account holder PT Contoh Hosting" in page
    assert f"Transfer reference {customer.email}" in page
    assert f"To pay everything owed, transfer {PRICE}." in page
    assert "To pay one invoice, open it" in page
    assert CONTACT_SUPPORT not in page


def test_the_top_up_page_after_a_refused_amount_still_shows_the_account(
    client, customer, admin_user, midtrans
):
    """With a payment provider, a refused amount renders the billing page again: the bank transfer is
    offered as the other way to pay, and the provider was not asked for anything."""
    bank_account(admin_user)
    client.force_login(customer)
    response = client.post("/billing/top-up/", {"amount": "100000.50", "provider": "midtrans"})
    page = text(response)
    assert response.status_code == 200 and "IDR has no minor unit" in page
    assert "Or pay by bank transfer" in page and "Account number 123-456-7890" in page
    assert not Checkout.objects.exists()


def test_with_nothing_set_customers_are_told_to_contact_support(client, customer, settings):
    settings.BANK_TRANSFER_INSTRUCTIONS = ""
    invoice = invoice_for(customer)
    client.force_login(customer)
    for url in (f"/billing/invoices/{invoice.pk}/", "/billing/"):
        response = client.get(url)
        page = text(response)
        assert CONTACT_SUPPORT in page, url
        assert "Account number" not in page and "Account holder" not in page, url
        assert 'class="pay-details"' not in response.content.decode(), url
    assert invoice.number in text(client.get(f"/billing/invoices/{invoice.pk}/"))


def test_a_seller_email_is_offered_for_questions_about_payments(client, customer, admin_user, settings):
    settings.BANK_TRANSFER_INSTRUCTIONS = ""
    set_details(admin_user, email="billing@contoh.co.id", phone="+62 21 555 0100")
    invoice = invoice_for(customer)
    client.force_login(customer)
    response = client.get(f"/billing/invoices/{invoice.pk}/")
    page = text(response)
    assert CONTACT_SUPPORT in page
    assert 'href="mailto:billing@contoh.co.id"' in response.content.decode() and "+62 21 555 0100" in page


def test_the_invoice_names_the_seller_when_set_and_the_buyer(client, customer, admin_user):
    customer.first_name, customer.last_name = "Budi", "Santoso"
    customer.save()
    set_details(
        admin_user,
        legal_name="PT Contoh Hosting Indonesia",
        address="Jl. Sudirman No. 1\nJakarta 10220",
        tax_id="01.234.567.8-901.000",
    )
    invoice = invoice_for(customer)
    client.force_login(customer)
    response = client.get(f"/billing/invoices/{invoice.pk}/")
    html = response.content.decode()
    page = text(response)
    assert 'invoice__seller-name">PT Contoh Hosting Indonesia<' in html
    assert "From PT Contoh Hosting Indonesia Jl. Sudirman No. 1 Jakarta 10220" in page
    assert "Jl. Sudirman No. 1<br>Jakarta 10220" in html
    assert "Tax ID (NPWP): 01.234.567.8-901.000" in page
    assert f"To Budi Santoso {customer.email}" in page


def test_the_invoice_leaves_out_what_is_blank(client, customer, admin_user):
    set_details(admin_user, legal_name="PT Contoh Hosting Indonesia")
    invoice = invoice_for(customer)
    client.force_login(customer)
    response = client.get(f"/billing/invoices/{invoice.pk}/")
    page = text(response)
    assert "From PT Contoh Hosting Indonesia" in page
    assert "NPWP" not in page and 'class="invoice__address"' not in response.content.decode()
    assert f"To {customer.email}" in page


def test_with_no_seller_details_the_invoice_has_no_from_block(client, customer):
    invoice = invoice_for(customer)
    client.force_login(customer)
    response = client.get(f"/billing/invoices/{invoice.pk}/")
    html = response.content.decode()
    assert 'invoice__seller-name">VPS Panel<' in html
    assert "invoice__from" not in html and "NPWP" not in html
    assert f"To {customer.email}" in text(response)
