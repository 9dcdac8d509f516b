"""Staff record a withholding slip (PPh 23) against an open invoice on its staff page: the slip's number,
the amount (2 % of the price before tax is offered) and an optional scan (PDF, JPEG or PNG, at most 5 MB,
kept under MEDIA_ROOT and downloadable by staff only). The amount settles that part of the invoice, which
is paid once the money for the rest has arrived. A slip over what the invoice still needs, a number
already recorded for the customer, a file too large or of another type are refused with nothing changed;
customers reach none of it, and the forms need their CSRF token."""

from decimal import Decimal
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from billing import ledger, payments
from billing.models import Invoice, LedgerEntry, WithholdingSlip
from tests.billing.documents import company_customer, page_text, set_seller, taxed_invoice

pytestmark = pytest.mark.django_db

PDF_SCAN = b"%PDF-1.4\n% a scanned bukti potong\n"
PNG_SCAN = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture(autouse=True)
def media(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def stored_files(media: Path) -> list[Path]:
    return [path for path in media.rglob("*") if path.is_file()] if media.exists() else []


def record(client, invoice: Invoice, number: str, amount: str, scan=None):
    data = {"number": number, "amount": amount}
    if scan is not None:
        data["scan"] = scan
    return client.post(f"/staff/invoices/{invoice.pk}/withholding-slips/", data)


def unchanged(invoice: Invoice, media: Path) -> None:
    assert not WithholdingSlip.objects.filter(invoice=invoice).exists()
    assert not LedgerEntry.objects.filter(invoice=invoice, kind=LedgerEntry.Kind.WITHHOLDING).exists()
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN
    assert stored_files(media) == []


def test_a_slip_settles_its_part_and_the_payment_of_the_rest_pays_the_invoice(
    client, admin_user, staff, media
):
    set_seller(admin_user)
    customer = company_customer()
    invoice = taxed_invoice(customer)
    client.force_login(staff)
    html = client.get(f"/staff/invoices/{invoice.pk}/").content.decode()
    assert "Record a withholding slip (PPh 23)" in html
    assert 'name="amount" value="20000"' in html  # 2 % of Rp1,000,000 before tax
    assert 'enctype="multipart/form-data"' in html

    scan = SimpleUploadedFile("IMG_2041 bukti potong.pdf", PDF_SCAN, content_type="application/pdf")
    response = record(client, invoice, "BP-0042/2026", "20000", scan)
    assert response.status_code == 302
    assert response["Location"] == f"/staff/invoices/{invoice.pk}/#withholding"
    slip = WithholdingSlip.objects.get(invoice=invoice)
    assert (slip.number, slip.amount, slip.recorded_by) == ("BP-0042/2026", Decimal("20000"), staff)
    assert (slip.entry.kind, slip.entry.amount, slip.entry.created_by) == (
        "withholding",
        Decimal(20000),
        staff,
    )
    [stored] = stored_files(media)
    assert stored.read_bytes() == PDF_SCAN and stored.name == "bp-00422026.pdf"
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN
    page = page_text(client.get(response["Location"]))
    assert "Withholding slip BP-0042/2026 of Rp20,000 recorded." in page
    assert "Tax withheld (PPh 23) −Rp20,000 Amount due Rp1,090,000" in page

    # The rest arrives: the invoice is paid and the account owes nothing.
    payments.record_payment(customer, Decimal("1090000"), "BCA-77")
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert ledger.balance(customer) == 0


def test_a_slip_that_covers_the_last_part_pays_the_invoice(client, admin_user, staff):
    set_seller(admin_user)
    customer = company_customer()
    invoice = taxed_invoice(customer)
    payments.record_payment(customer, Decimal("1090000"), "BCA-77")  # paid less the tax withheld
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN
    client.force_login(staff)
    response = record(client, invoice, "BP-7", "20000")
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    page = page_text(client.get(response["Location"]))
    assert f"Withholding slip BP-7 of Rp20,000 recorded; invoice {invoice.number} is paid." in page
    assert ledger.balance(customer) == 0


def test_the_scan_is_for_staff_only_through_a_view(client, admin_user, staff, media):
    set_seller(admin_user)
    customer = company_customer()
    invoice = taxed_invoice(customer)
    client.force_login(staff)
    record(client, invoice, "BP-9", "20000", SimpleUploadedFile("scan.png", PNG_SCAN, "image/png"))
    slip = WithholdingSlip.objects.get()
    url = f"/staff/withholding-slips/{slip.pk}/scan/"
    assert url in client.get(f"/staff/invoices/{invoice.pk}/").content.decode()
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert response["Content-Disposition"] == 'attachment; filename="bp-9.png"'
    assert b"".join(response.streaming_content) == PNG_SCAN
    # The customer sees the slip on their invoice, never its scan, and no address of the file.
    client.force_login(customer)
    response = client.get(f"/billing/invoices/{invoice.pk}/")
    html = response.content.decode()
    assert "BP-9" in html and url not in html and slip.file.name not in html
    assert client.get(url).status_code == 403


def test_a_slip_over_what_is_due_is_refused_and_changes_nothing(client, admin_user, staff, media):
    set_seller(admin_user)
    invoice = taxed_invoice(company_customer())
    client.force_login(staff)
    scan = SimpleUploadedFile("scan.pdf", PDF_SCAN, "application/pdf")
    response = record(client, invoice, "BP-1", "1110001", scan)
    assert response.status_code == 200
    assert "This invoice needs only Rp1,110,000 more." in page_text(response)
    unchanged(invoice, media)


def test_a_slip_number_is_recorded_once_per_customer(client, admin_user, staff, media):
    set_seller(admin_user)
    customer = company_customer()
    first, second = taxed_invoice(customer), taxed_invoice(customer)
    client.force_login(staff)
    record(client, first, "BP-1", "20000")
    response = record(client, second, "BP-1", "20000", SimpleUploadedFile("scan.pdf", PDF_SCAN))
    assert response.status_code == 200
    assert "A withholding slip with this number is already recorded for this customer." in page_text(response)
    unchanged(second, media)
    # Another customer's slip may carry the same number.
    other = taxed_invoice(company_customer())
    assert record(client, other, "BP-1", "20000").status_code == 302


@pytest.mark.parametrize(
    "scan, error",
    [
        (("big.pdf", b"%PDF-1.4\n" + b"0" * (5 * 1024 * 1024)), "The scan is larger than 5 MB"),
        (("slip.exe", b"MZ\x90\x00 not a scan"), "The scan must be a PDF, JPEG or PNG file."),
        (("slip.pdf", b"<html>not a pdf</html>"), "The scan must be a PDF, JPEG or PNG file."),
        (("slip.pdf", PNG_SCAN), "The scan must be a PDF, JPEG or PNG file."),
    ],
)
def test_a_scan_too_large_or_of_another_type_is_refused(client, admin_user, staff, media, scan, error):
    set_seller(admin_user)
    invoice = taxed_invoice(company_customer())
    client.force_login(staff)
    name, content = scan
    response = record(client, invoice, "BP-1", "20000", SimpleUploadedFile(name, content))
    assert response.status_code == 200
    assert error in page_text(response)
    unchanged(invoice, media)


def test_a_paid_invoice_takes_no_slip_and_staff_take_none_on_their_own_account(
    client, admin_user, staff, media
):
    set_seller(admin_user)
    customer = company_customer()
    invoice = taxed_invoice(customer)
    payments.record_payment(customer, Decimal("1110000"), "BCA-1")
    client.force_login(staff)
    response = record(client, invoice, "BP-1", "20000")
    assert response.status_code == 200
    assert "Tax withheld is recorded against open invoices only." in page_text(response)
    assert not WithholdingSlip.objects.exists()

    own = taxed_invoice(staff)
    response = record(client, own, "BP-2", "20000")
    assert response.status_code == 200 and "on your own account" in page_text(response)
    unchanged(own, media)


def test_customers_cannot_record_slips(client, admin_user, media):
    set_seller(admin_user)
    customer = company_customer()
    invoice = taxed_invoice(customer)
    client.force_login(customer)
    assert record(client, invoice, "BP-1", "20000").status_code == 403
    assert "Record a withholding slip" not in client.get(f"/billing/invoices/{invoice.pk}/").content.decode()
    unchanged(invoice, media)


def test_the_forms_need_their_csrf_token(admin_user, staff, media):
    set_seller(admin_user)
    customer = company_customer()
    paid = taxed_invoice(customer)
    payments.record_payment(customer, Decimal("1110000"), "BCA-1")
    invoice = taxed_invoice(customer)
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    response = client.post(
        f"/staff/invoices/{invoice.pk}/withholding-slips/", {"number": "BP-1", "amount": "20000"}
    )
    assert response.status_code == 403
    response = client.post(f"/staff/invoices/{paid.pk}/credit-notes/", {"amount": "1000", "reason": "Outage"})
    assert response.status_code == 403
    unchanged(invoice, media)
    assert not paid.credit_notes.exists()
