"""The invoice page shows who sells and who buys as the invoice recorded them (names, addresses, NPWP or
NIK), the lines, and the tax breakdown: the subtotal before tax, the tax base (DPP) with its fraction, the
VAT (PPN) at its rate and the total; the tax withheld and what is still due; its credit notes with their
PDFs; a PDF download beside the print button. An open invoice offers "Pay now" (one button per configured
provider) and the bank transfer with the amount to transfer and its unique code. Invoices issued before
tax show as they were: no tax rows, today's seller."""

from decimal import Decimal

import pytest

from billing import credit_notes, payments, withholding
from billing.models import Invoice, SellerProfile
from tests import factories
from tests.billing.documents import (
    BUYER_NPWP,
    PRICE,
    company_customer,
    page_text,
    set_seller,
    taxed_invoice,
)

pytestmark = pytest.mark.django_db

SELLER_BLOCK = (
    "From PT Awan Nusantara Sejahtera Jl. Jenderal Sudirman Kav. 52-53 Jakarta Selatan 12190 "
    "Tax ID (NPWP): 01.234.567.8-901.000"
)


def test_the_page_names_both_parties_with_their_tax_ids_and_breaks_the_tax_down(client, admin_user):
    set_seller(admin_user)
    customer = company_customer()
    invoice = taxed_invoice(customer)
    client.force_login(customer)
    response = client.get(f"/billing/invoices/{invoice.pk}/")
    assert response.status_code == 200
    page, html = page_text(response), response.content.decode()
    assert SELLER_BLOCK in page
    assert (
        f"To PT Toko Maju Jaya {customer.email} Jl. Gajah Mada No. 8 Semarang 50134 "
        f"Tax ID (NPWP): {BUYER_NPWP}"
    ) in page
    assert "Cloud server 4 GB, March 1 Rp1,110,000 Rp1,110,000" in page
    assert "Subtotal price before tax Rp1,000,000" in page
    assert "Tax base (DPP, 11/12 of the subtotal) Rp916,667" in page
    assert "VAT (PPN) 12% Rp110,000" in page
    assert "Total Rp1,110,000" in page
    assert "The prices above include VAT (PPN)." in page
    assert "Tax withheld" not in page and "Amount due" not in page
    # The PDF beside the print button.
    assert f'href="/billing/invoices/{invoice.pk}/pdf/"' in html and "Download PDF" in page
    assert "window.print()" in html


def test_the_page_is_in_the_customers_language(client, admin_user):
    set_seller(admin_user)
    customer = company_customer(language="id")
    invoice = taxed_invoice(customer)
    client.force_login(customer)
    response = client.get(f"/billing/invoices/{invoice.pk}/")
    assert response.status_code == 200 and response["Content-Language"] == "id"
    page = page_text(response)
    for shown in ("Rp1.000.000", "Rp916.667", "Rp110.000", "Rp1.110.000", BUYER_NPWP, "01.234.567.8-901.000"):
        assert shown in page, shown
    assert "1,110,000" not in page


def test_a_nik_is_named_as_such(client, admin_user):
    set_seller(admin_user)
    customer = company_customer(company_name="", tax_id_kind="nik", tax_id="3174012345678901")
    invoice = taxed_invoice(customer)
    client.force_login(customer)
    page = page_text(client.get(f"/billing/invoices/{invoice.pk}/"))
    assert f"To {customer.email} Jl. Gajah Mada No. 8 Semarang 50134 Tax ID (NIK): 3174012345678901" in page


def test_an_open_invoice_offers_pay_now_per_provider_and_the_transfer_with_its_code(
    client, admin_user, settings
):
    settings.MIDTRANS_SERVER_KEY = "SB-Mid-server-test"
    settings.XENDIT_SECRET_KEY = "xnd_development_test"
    set_seller(admin_user)
    SellerProfile.objects.filter(pk=1).update(unique_amount_codes=True)
    customer = company_customer()
    invoice = taxed_invoice(customer)
    assert invoice.unique_code
    client.force_login(customer)
    response = client.get(f"/billing/invoices/{invoice.pk}/")
    page, html = page_text(response), response.content.decode()
    assert f'action="/billing/invoices/{invoice.pk}/pay/"' in html
    assert 'name="provider" value="midtrans"' in html and 'name="provider" value="xendit"' in html
    assert "Pay now with Midtrans" in page and "Pay now with Xendit" in page
    code = f"{invoice.unique_code:03d}"
    transfer = f"Rp{1110000 + invoice.unique_code:,}"
    assert f"Amount to transfer {transfer}" in page
    assert f"its last digits, {code} , are this invoice's code" in page
    assert f"Transfer reference {invoice.number}" in page
    # Staff see how the customer is told to pay, but pay nothing themselves.
    client.force_login(factories.make_user("staff"))
    page = page_text(client.get(f"/staff/invoices/{invoice.pk}/"))
    assert f"Amount to transfer {transfer}" in page and "Pay now with" not in page


def test_tax_withheld_shows_what_is_still_due_and_credit_notes_link_their_pdfs(client, admin_user, staff):
    set_seller(admin_user)
    customer = company_customer()
    invoice = taxed_invoice(customer)
    withholding.record_slip(invoice, "BP-0042/2026", Decimal("20000"), None, by=staff)
    client.force_login(customer)
    page = page_text(client.get(f"/billing/invoices/{invoice.pk}/"))
    assert "Tax withheld (PPh 23) −Rp20,000 Amount due Rp1,090,000" in page
    assert "Amount to transfer Rp1,090,000" in page
    assert "BP-0042/2026" in page

    payments.record_payment(customer, Decimal("1090000"), "BCA-1")
    note = credit_notes.credit_paid_invoice(invoice, Decimal("370000"), "Server down for ten days", by=staff)
    response = client.get(f"/billing/invoices/{invoice.pk}/")
    page, html = page_text(response), response.content.decode()
    assert "This invoice was paid on" in page and "Amount due" not in page
    assert f"{note.number}" in page and "Server down for ten days" in page and "Rp370,000" in page
    assert f'href="/billing/credit-notes/{note.pk}/pdf/"' in html


def test_an_invoice_from_before_tax_shows_as_it_was_with_todays_seller(client, admin_user, customer):
    invoice = taxed_invoice(customer, Decimal("150000"))
    # As a row from before invoices had tax: the new columns at their defaults.
    Invoice.objects.filter(pk=invoice.pk).update(
        subtotal=0, tax_base=0, tax=0, tax_rate=0, tax_base_fraction="", seller_name="", seller_address="",
        seller_tax_id="", buyer_name="", buyer_address="", buyer_tax_id_kind="", buyer_tax_id="",
    )  # fmt: skip
    set_seller(admin_user)
    client.force_login(customer)
    page = page_text(client.get(f"/billing/invoices/{invoice.pk}/"))
    assert SELLER_BLOCK in page
    assert f"To {customer.email}" in page
    assert "Total Rp150,000" in page
    for absent in ("Subtotal", "Tax base", "VAT (PPN)", "include VAT", "0/0"):
        assert absent not in page, absent


def test_an_invoice_of_prices_without_tax_adds_the_tax_on_top(client, admin_user, settings):
    settings.PRICES_INCLUDE_TAX = False
    set_seller(admin_user)
    customer = company_customer()
    invoice = taxed_invoice(customer, Decimal("1000000"))
    assert (invoice.subtotal, invoice.tax, invoice.total) == (Decimal(1000000), Decimal(110000), PRICE)
    client.force_login(customer)
    page = page_text(client.get(f"/billing/invoices/{invoice.pk}/"))
    assert "Subtotal price before tax Rp1,000,000" in page and "Total Rp1,110,000" in page
    assert "include VAT" not in page
