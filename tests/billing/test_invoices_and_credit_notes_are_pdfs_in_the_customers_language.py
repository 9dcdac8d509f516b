"""Invoices and credit notes download as PDFs (A4, WeasyPrint) with the facts of the invoice page: the
number, both parties with their NPWP, the tax breakdown, the status, how to pay an open one. Customers get
their own (anyone else's is a 404, as are drafts), staff any customer's on the staff address; the API
gives the PDF at `invoices/{id}/pdf/`. Each is in the customer's language, and a new invoice is mailed to
its customer with its PDF attached, by a worker."""

from decimal import Decimal

import pytest
from django.core import mail

from billing import credit_notes, invoices, payments
from billing.models import Invoice
from tests.billing.documents import (
    BUYER_NPWP,
    DESCRIPTION,
    company_customer,
    pdf_text,
    set_seller,
    taxed_invoice,
)

pytestmark = pytest.mark.django_db

SELLER = "PT Awan Nusantara Sejahtera Jl. Jenderal Sudirman Kav. 52-53 Jakarta Selatan 12190"
SELLER_NPWP = "01.234.567.8-901.000"


def download(client, url: str, filename: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="{filename}"'
    return pdf_text(response.content)


def test_a_customer_downloads_an_open_invoice_with_its_tax_breakdown_and_how_to_pay(client, admin_user):
    set_seller(admin_user)
    customer = company_customer()
    invoice = taxed_invoice(customer)
    client.force_login(customer)
    text = download(client, f"/billing/invoices/{invoice.pk}/pdf/", f"{invoice.number}.pdf")
    assert "INVOICE" in text and invoice.number in text and "OPEN" in text
    assert f"{SELLER} NPWP {SELLER_NPWP}" in text
    assert f"PT Toko Maju Jaya Jl. Gajah Mada No. 8 Semarang 50134 NPWP {BUYER_NPWP}" in text
    assert f"{DESCRIPTION} 1 Rp1,110,000 Rp1,110,000" in text
    assert "Subtotal price before tax Rp1,000,000" in text
    assert "Tax base (DPP, 11/12 of the subtotal) Rp916,667" in text
    assert "VAT (PPN) 12% Rp110,000" in text
    assert "Total Rp1,110,000" in text
    assert "How to pay" in text and "Account number 123-456-7890" in text
    assert f"Amount to transfer Rp1,110,000 Transfer reference {invoice.number}" in text


def test_the_pdf_is_in_the_customers_language_whoever_downloads_it(client, admin_user, staff):
    set_seller(admin_user)
    customer = company_customer(language="id")
    invoice = taxed_invoice(customer)
    for who, url in (
        (customer, f"/billing/invoices/{invoice.pk}/pdf/"),
        (staff, f"/staff/invoices/{invoice.pk}/pdf/"),
    ):
        client.force_login(who)
        text = download(client, url, f"{invoice.number}.pdf")
        assert "Total Rp1.110.000" in text and "Rp916.667" in text and f"NPWP {BUYER_NPWP}" in text
        assert "Cara pembayaran" in text and "Nomor rekening 123-456-7890" in text
        assert "How to pay" not in text and "1,110,000" not in text


def test_a_paid_invoice_says_so_and_asks_for_nothing(client, admin_user):
    set_seller(admin_user)
    customer = company_customer()
    invoice = taxed_invoice(customer)
    payments.record_payment(customer, Decimal("1110000"), "BCA-1")
    client.force_login(customer)
    text = download(client, f"/billing/invoices/{invoice.pk}/pdf/", f"{invoice.number}.pdf")
    assert "PAID" in text and "This invoice was paid on" in text
    assert "How to pay" not in text and "Amount to transfer" not in text


def test_a_credit_note_is_a_pdf_with_the_invoices_tax_in_proportion(client, admin_user, staff):
    set_seller(admin_user)
    customer = company_customer()
    invoice = taxed_invoice(customer)
    payments.record_payment(customer, Decimal("1110000"), "BCA-1")
    note = credit_notes.credit_paid_invoice(invoice, Decimal("370000"), "Server down for ten days", by=staff)
    for who, url in (
        (customer, f"/billing/credit-notes/{note.pk}/pdf/"),
        (staff, f"/staff/credit-notes/{note.pk}/pdf/"),
    ):
        client.force_login(who)
        text = download(client, url, f"{note.number}.pdf")
        assert "CREDIT NOTE" in text and note.number in text and f"FOR INVOICE {invoice.number}" in text
        assert f"NPWP {SELLER_NPWP}" in text and f"NPWP {BUYER_NPWP}" in text
        assert "Server down for ten days" in text
        # 370,000 of 1,110,000 is a third: a third of the tax, rounded once.
        assert "Subtotal price before tax Rp333,333" in text
        assert "VAT (PPN) 12% Rp36,667" in text and "Total Rp370,000" in text


def test_nobody_gets_another_customers_documents_nor_a_draft(client, admin_user, staff, other_customer):
    set_seller(admin_user)
    customer = company_customer()
    invoice = taxed_invoice(customer)
    payments.record_payment(customer, Decimal("1110000"), "BCA-1")
    note = credit_notes.credit_paid_invoice(invoice, Decimal("1000"), "Goodwill", by=staff)
    draft = Invoice.objects.create(account=customer, currency="IDR")
    assert client.get(f"/billing/invoices/{invoice.pk}/pdf/")["Location"].startswith("/accounts/login/")
    client.force_login(other_customer)
    for url in (f"/billing/invoices/{invoice.pk}/pdf/", f"/billing/credit-notes/{note.pk}/pdf/"):
        assert client.get(url).status_code == 404, url
    for url in (f"/staff/invoices/{invoice.pk}/pdf/", f"/staff/credit-notes/{note.pk}/pdf/"):
        assert client.get(url).status_code == 403, url
    client.force_login(customer)
    assert client.get(f"/billing/invoices/{draft.pk}/pdf/").status_code == 404
    client.force_login(staff)
    assert client.get(f"/staff/invoices/{draft.pk}/pdf/").status_code == 404
    # Staff use the staff address, never the customer's.
    assert client.get(f"/billing/invoices/{invoice.pk}/pdf/").status_code == 404


def test_the_api_gives_the_pdf_of_the_token_owners_invoices_only(api, admin_user, other_customer):
    set_seller(admin_user)
    customer = company_customer(language="id")
    invoice = taxed_invoice(customer)
    draft = Invoice.objects.create(account=customer, currency="IDR")
    for accept in ("*/*", "application/pdf"):
        response = api(customer).get(f"/api/v1/invoices/{invoice.pk}/pdf/", HTTP_ACCEPT=accept)
        assert response.status_code == 200
        assert response["Content-Type"] == "application/pdf"
        assert response["Content-Disposition"] == f'attachment; filename="{invoice.number}.pdf"'
        text = pdf_text(response.content)
        assert invoice.number in text and f"NPWP {BUYER_NPWP}" in text and f"NPWP {SELLER_NPWP}" in text
        assert "Total Rp1.110.000" in text and "Rp110.000" in text  # the token owner's language
    for client, path in (
        (api(other_customer), f"/api/v1/invoices/{invoice.pk}/pdf/"),
        (api(customer), f"/api/v1/invoices/{draft.pk}/pdf/"),
        (api(customer), "/api/v1/invoices/999999/pdf/"),
    ):
        response = client.get(path, HTTP_ACCEPT="application/pdf")
        assert response.status_code == 404, path
        assert response["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] == "not_found"
    assert api(None).get(f"/api/v1/invoices/{invoice.pk}/pdf/").status_code == 401


def test_the_api_schema_describes_the_pdf(api, customer):
    schema = api(customer).get("/api/v1/schema/?format=json").json()
    operation = schema["paths"]["/api/v1/invoices/{id}/pdf/"]["get"]
    assert "application/pdf" in operation["responses"]["200"]["content"]
    assert "404" in operation["responses"]


def test_a_new_invoice_is_mailed_with_its_pdf_by_a_worker(
    admin_user, billing_queue, django_capture_on_commit_callbacks
):
    set_seller(admin_user)
    customer = company_customer(language="id")
    with django_capture_on_commit_callbacks(execute=True):
        invoice = taxed_invoice(customer)
    assert not [m for m in mail.outbox if m.to == [customer.email] and m.attachments]
    assert billing_queue.run() == [1]
    [message] = [m for m in mail.outbox if m.to == [customer.email] and m.attachments]
    assert invoice.number in message.subject and message.extra_headers["Content-Language"] == "id"
    assert "Rp1.110.000" in message.body
    [(filename, content, mimetype)] = message.attachments
    assert (filename, mimetype) == (f"{invoice.number}.pdf", "application/pdf")
    text = pdf_text(content)
    assert invoice.number in text and f"NPWP {BUYER_NPWP}" in text and "Total Rp1.110.000" in text


def test_an_invoice_paid_at_once_is_mailed_as_paid_and_one_voided_meanwhile_is_not_mailed(
    admin_user, billing_queue, staff, django_capture_on_commit_callbacks
):
    set_seller(admin_user)
    customer = company_customer()
    payments.record_payment(customer, Decimal("1110000"), "BCA-1")
    with django_capture_on_commit_callbacks(execute=True):
        paid = taxed_invoice(customer)
        voided = taxed_invoice(customer)
    assert paid.status == Invoice.Status.PAID
    invoices.void_invoice(voided, by=staff)
    assert billing_queue.run() == [1, 0]
    [message] = [m for m in mail.outbox if m.to == [customer.email] and m.attachments]
    assert message.subject == f"Invoice {paid.number}"
    assert "is paid from the credit on your account" in message.body and "is due on" not in message.body
    assert "PAID" in pdf_text(message.attachments[0][1])
