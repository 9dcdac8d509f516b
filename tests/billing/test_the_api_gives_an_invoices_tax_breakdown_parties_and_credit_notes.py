"""The API's invoices carry the tax breakdown (subtotal, tax base, tax, total, the rate and the base's
fraction), the seller and the buyer with their tax IDs as the invoice recorded them, the tax withheld,
what is still due, the unique code and the amount to transfer, and the credit notes; a list asks the same
number of queries however many invoices, slips and credit notes it shows."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils.dateparse import parse_datetime

from billing import credit_notes, payments, withholding
from billing.models import Invoice, SellerProfile
from tests.billing.documents import company_customer, set_seller, taxed_invoice

pytestmark = pytest.mark.django_db

SELLER = {
    "name": "PT Awan Nusantara Sejahtera",
    "address": "Jl. Jenderal Sudirman Kav. 52-53\nJakarta Selatan 12190",
    "tax_id": "01.234.567.8-901.000",
}


def test_an_open_invoice_with_tax_withheld(api, admin_user, staff):
    set_seller(admin_user)
    SellerProfile.objects.filter(pk=1).update(unique_amount_codes=True)
    customer = company_customer()
    invoice = taxed_invoice(customer)
    withholding.record_slip(invoice, "BP-1", Decimal("20000"), None, by=staff)
    body = api(customer).get(f"/api/v1/invoices/{invoice.pk}/").json()
    code = Invoice.objects.get(pk=invoice.pk).unique_code
    assert code
    assert {
        key: body[key] for key in ("subtotal", "tax_base", "tax", "total", "tax_rate", "tax_base_fraction")
    } == {
        "subtotal": "1000000",
        "tax_base": "916667",
        "tax": "110000",
        "total": "1110000",
        "tax_rate": "12.00",
        "tax_base_fraction": "11/12",
    }
    assert body["seller"] == SELLER
    assert body["buyer"] == {
        "name": "PT Toko Maju Jaya",
        "address": "Jl. Gajah Mada No. 8\nSemarang 50134",
        "tax_id_kind": "npwp",
        "tax_id": "098765432109000",
    }
    assert (body["seller_tax_id"], body["buyer_tax_id"]) == (SELLER["tax_id"], "098765432109000")
    assert (body["withheld"], body["amount_due"]) == ("20000", "1090000")
    assert (body["unique_code"], body["transfer_amount"]) == (code, str(1090000 + code))
    assert body["credit_notes"] == []
    # The list says the same.
    [listed] = api(customer).get("/api/v1/invoices/").json()["results"]
    assert listed == body


def test_a_paid_invoice_with_a_credit_note(api, admin_user, staff):
    set_seller(admin_user)
    customer = company_customer()
    invoice = taxed_invoice(customer)
    payments.record_payment(customer, Decimal("1110000"), "BCA-1")
    note = credit_notes.credit_paid_invoice(invoice, Decimal("370000"), "Outage", by=staff)
    body = api(customer).get(f"/api/v1/invoices/{invoice.pk}/").json()
    assert (body["status"], body["amount_due"], body["transfer_amount"]) == ("paid", "0", None)
    [credited] = body["credit_notes"]
    assert (credited["number"], credited["total"]) == (note.number, "370000")
    assert parse_datetime(credited["issued_at"]) == note.issued_at


def test_an_invoice_from_before_tax_names_todays_seller_and_the_account(api, admin_user, customer):
    invoice = taxed_invoice(customer, Decimal("150000"))
    Invoice.objects.filter(pk=invoice.pk).update(
        subtotal=0, tax_base=0, tax=0, tax_rate=0, tax_base_fraction="", seller_name="", seller_address="",
        seller_tax_id="", buyer_name="", buyer_address="", buyer_tax_id_kind="", buyer_tax_id="",
    )  # fmt: skip
    set_seller(admin_user)
    body = api(customer).get(f"/api/v1/invoices/{invoice.pk}/").json()
    assert (body["total"], body["tax_rate"], body["tax_base_fraction"]) == ("150000", "0.00", "")
    assert body["seller"] == SELLER
    assert body["buyer"] == {"name": customer.email, "address": "", "tax_id_kind": "", "tax_id": ""}


def test_the_list_asks_as_many_queries_for_many_invoices_with_slips_and_notes_as_for_one(
    api, admin_user, staff
):
    set_seller(admin_user)
    customer = company_customer()
    client = api(customer)

    def grow(count: int) -> None:
        for _ in range(count):
            paid = taxed_invoice(customer)
            withholding.record_slip(paid, f"BP-{paid.pk}", Decimal("20000"), None, by=staff)
            payments.record_payment(customer, Decimal("1090000"), f"BCA-{paid.pk}")
            credit_notes.credit_paid_invoice(paid, Decimal("1000"), "Goodwill", by=staff)
            credit_notes.credit_paid_invoice(paid, Decimal("2000"), "Goodwill again", by=staff)

    def queries() -> int:
        client.get("/api/v1/invoices/")
        with CaptureQueriesContext(connection) as captured:
            response = client.get("/api/v1/invoices/")
        assert response.status_code == 200
        return len(captured)

    grow(1)
    few = queries()
    grow(5)
    assert queries() == few
    results = client.get("/api/v1/invoices/").json()["results"]
    assert len(results) == 6 and sum(len(invoice["credit_notes"]) for invoice in results) == 12
    assert {invoice["withheld"] for invoice in results} == {"20000"}
