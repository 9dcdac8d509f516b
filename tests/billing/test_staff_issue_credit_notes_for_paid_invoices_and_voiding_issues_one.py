"""Staff issue a credit note for part or all of a paid invoice on its staff page (an amount and a reason):
a numbered document with the invoice's tax in proportion, the amount credited to the customer's balance,
listed on both invoice pages with its PDF. More than is left to credit, an open invoice, or no reason is
refused with nothing changed; customers reach none of it. Voiding an open invoice issues a credit note
for the whole of it."""

from decimal import Decimal

import pytest

from billing import ledger, payments
from billing.models import CreditNote, Invoice, LedgerEntry
from tests.billing.documents import (
    TAX,
    TAX_BASE,
    company_customer,
    page_text,
    pdf_text,
    set_seller,
    taxed_invoice,
)

pytestmark = pytest.mark.django_db


def paid_invoice(admin_user) -> Invoice:
    set_seller(admin_user)
    customer = company_customer()
    invoice = taxed_invoice(customer)
    payments.record_payment(customer, Decimal("1110000"), "BCA-1")
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    return invoice


def credit(client, invoice: Invoice, amount: str, reason: str):
    return client.post(f"/staff/invoices/{invoice.pk}/credit-notes/", {"amount": amount, "reason": reason})


def credits_of(invoice: Invoice) -> list:
    return list(
        LedgerEntry.objects.filter(invoice=invoice, kind=LedgerEntry.Kind.CREDIT).values_list(
            "amount", flat=True
        )
    )


def test_staff_credit_part_of_a_paid_invoice_and_the_customer_gets_the_note(client, admin_user, staff):
    invoice = paid_invoice(admin_user)
    customer = invoice.account
    client.force_login(staff)
    html = client.get(f"/staff/invoices/{invoice.pk}/").content.decode()
    assert "Issue a credit note" in html and "At most Rp1,110,000." in page_text(
        client.get(f"/staff/invoices/{invoice.pk}/")
    )

    response = credit(client, invoice, "370000", "Server down for ten days in March")
    assert (
        response.status_code == 302 and response["Location"] == f"/staff/invoices/{invoice.pk}/#credit-notes"
    )
    note = CreditNote.objects.get(invoice=invoice)
    assert (note.total, note.subtotal, note.tax, note.tax_base) == (
        Decimal(370000), Decimal(333333), Decimal(36667), Decimal(305556)
    )  # fmt: skip
    assert note.created_by == staff and note.account == customer
    assert credits_of(invoice) == [Decimal(370000)]
    assert ledger.balance(customer) == Decimal(370000)
    page = page_text(client.get(response["Location"]))
    assert f"Credit note {note.number} of Rp370,000 issued and credited to the customer's balance." in page
    assert "At most Rp740,000." in page

    client.force_login(customer)
    response = client.get(f"/billing/invoices/{invoice.pk}/")
    page, html = page_text(response), response.content.decode()
    assert note.number in page and "Server down for ten days in March" in page
    assert "Issue a credit note" not in page
    text = pdf_text(client.get(f"/billing/credit-notes/{note.pk}/pdf/").content)
    assert note.number in text and invoice.number in text and "Total Rp370,000" in text


def test_the_same_credit_note_sent_twice_is_issued_once(client, admin_user, staff):
    invoice = paid_invoice(admin_user)
    client.force_login(staff)
    first = credit(client, invoice, "370000", "Server down for ten days in March")
    again = credit(client, invoice, "370000", "Server down for ten days in March")  # a double click
    assert first.status_code == again.status_code == 302
    assert CreditNote.objects.filter(invoice=invoice).count() == 1
    assert credits_of(invoice) == [Decimal(370000)]
    # Another reason is another note.
    credit(client, invoice, "100000", "Backup restore failed")
    assert CreditNote.objects.filter(invoice=invoice).count() == 2
    assert credits_of(invoice) == [Decimal(370000), Decimal(100000)]


def test_no_more_than_is_left_can_be_credited(client, admin_user, staff):
    invoice = paid_invoice(admin_user)
    client.force_login(staff)
    credit(client, invoice, "370000", "Outage")
    response = credit(client, invoice, "740001", "Outage again")
    assert response.status_code == 200
    assert "At most Rp740,000 of this invoice can still be credited." in page_text(response)
    assert CreditNote.objects.filter(invoice=invoice).count() == 1
    assert credits_of(invoice) == [Decimal(370000)]
    # The rest, to the rupiah, is fine; then the form is gone.
    assert credit(client, invoice, "740000", "Refund of the rest").status_code == 302
    assert "Issue a credit note" not in client.get(f"/staff/invoices/{invoice.pk}/").content.decode()


def test_a_credit_note_needs_a_paid_invoice_a_reason_and_an_amount(client, admin_user, staff):
    invoice = paid_invoice(admin_user)
    client.force_login(staff)
    for amount, reason, error in (
        ("370000", "   ", "This field is required."),
        ("0", "Outage", "Ensure this value is greater than or equal to 0.01."),
        ("100.5", "Outage", "IDR has no minor unit: give a whole amount."),
    ):
        response = credit(client, invoice, amount, reason)
        assert response.status_code == 200 and error in page_text(response), (amount, reason)
    open_invoice = taxed_invoice(invoice.account)
    response = credit(client, open_invoice, "1000", "Outage")
    assert response.status_code == 200
    assert "Credit notes are issued for paid invoices; void an open one instead." in page_text(response)
    assert not CreditNote.objects.exists()
    assert credits_of(invoice) == [] and credits_of(open_invoice) == []


def test_customers_cannot_issue_credit_notes(client, admin_user):
    invoice = paid_invoice(admin_user)
    client.force_login(invoice.account)
    assert credit(client, invoice, "1110000", "I want my money back").status_code == 403
    assert client.get(f"/staff/invoices/{invoice.pk}/credit-notes/").status_code == 403
    assert not CreditNote.objects.exists() and ledger.balance(invoice.account) == 0


def test_voiding_an_invoice_issues_a_credit_note_for_all_of_it(client, admin_user, staff):
    set_seller(admin_user)
    customer = company_customer()
    invoice = taxed_invoice(customer)
    client.force_login(staff)
    url = f"/staff/invoices/{invoice.pk}/"
    client.post(f"{url}void/", {"next": url})
    note = CreditNote.objects.get(invoice=invoice)
    assert (note.total, note.tax, note.tax_base) == (invoice.total, TAX, TAX_BASE)
    assert ledger.balance(customer) == 0
    page = page_text(client.get(url))
    assert note.number in page and f"Invoice {invoice.number} voided" in page
    assert "Issue a credit note" not in page and "Record a withholding slip" not in page
    client.force_login(customer)
    html = client.get(f"/billing/invoices/{invoice.pk}/").content.decode()
    assert f'href="/billing/credit-notes/{note.pk}/pdf/"' in html
    text = pdf_text(client.get(f"/billing/credit-notes/{note.pk}/pdf/").content)
    assert "Total Rp1,110,000" in text and "The invoice was voided: nothing is owed for it." in text
