"""A company customer opens an invoice with tax, at 1280 px and at 390 px, in English and in Indonesian: the
page names both parties with their NPWP, breaks the tax down, offers "Pay now" and the bank transfer with
the invoice's code, fits the screen, and its "Download PDF" gives the invoice as a PDF in the customer's
language. Staff record a withholding slip with its scan from the same page. Screenshots and the PDFs go to
/tmp/shots/ (invoice-tax-<size>-<language>.png, invoice-tax-<language>.pdf, invoice-staff-<size>.png)."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import expect

from billing import buyer
from billing.models import Invoice, SellerProfile, WithholdingSlip
from tests import factories
from tests.billing.documents import (
    BUYER,
    BUYER_NPWP,
    DESCRIPTION,
    SELLER,
    pdf_text,
    set_seller,
    taxed_invoice,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "kopi tubruk 2026!"
SIZES = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
SHOTS = Path("/tmp/shots")
TOTALS = {
    "en": ("Rp1,000,000", "Rp916,667", "Rp110,000", "Rp1,110,000"),
    "id": ("Rp1.000.000", "Rp916.667", "Rp110.000", "Rp1.110.000"),
}
# Boxes whose content must stay inside them (an invoice's lines may scroll in their own box).
BOXES = ", ".join(
    [".card__header", ".card__body", ".alert", ".pay-details", ".invoice__parties", ".invoice-toolbar"]
    + [".invoice-pay__buttons", ".table-wrap:not(.table-wrap--document)"]
)
OVERFLOWING = f"""() => [...document.querySelectorAll('{BOXES}')]
  .filter((el) => el.scrollWidth > el.clientWidth + 1)
  .map((el) => el.className + ': ' + el.textContent.trim().slice(0, 60))"""

# The page does not scroll sideways: the elements that reach past the screen's right edge, if any.
WIDER_THAN_THE_SCREEN = """() => document.documentElement.scrollWidth <= window.innerWidth ? [] :
  [...document.querySelectorAll('body *')]
  .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1)
  .map((el) => el.tagName + '.' + el.className + ': ' + el.textContent.trim().slice(0, 40)).slice(-5)"""


def _log_in(page, base_url: str, email: str, code_of=None) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("form button[type=submit]").last.click()
    if code_of is not None:
        expect(page).to_have_url(re.compile(r"/accounts/login/code/"))
        page.fill("input[name=code]", code_of())
        page.locator("form button[type=submit]").last.click()
    expect(page).to_have_url(re.compile(r"/servers/"))


@pytest.mark.parametrize("language", ["en", "id"])
@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_a_customer_reads_an_invoice_with_tax_and_downloads_its_pdf(
    browser, live_server, settings, size, language
):
    settings.MIDTRANS_SERVER_KEY = "SB-Mid-server-e2e"
    set_seller(factories.make_user("admin"))
    SellerProfile.objects.filter(pk=1).update(unique_amount_codes=True)
    customer = factories.make_user(email="budi.santoso@example.com", password=PASSWORD, language=language)
    buyer.save_details(customer, BUYER)
    invoice = taxed_invoice(customer)
    invoice = Invoice.objects.get(pk=invoice.pk)
    assert invoice.unique_code

    context = browser.new_context(viewport=SIZES[size], locale="en-US", accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        _log_in(page, live_server.url, customer.email)
        page.goto(f"{live_server.url}/billing/invoices/{invoice.pk}/")
        expect(page.locator("html")).to_have_attribute("lang", language)
        article = page.locator("article.invoice")
        expect(article).to_contain_text(SELLER["legal_name"])
        expect(article).to_contain_text(SELLER["tax_id"])
        expect(article).to_contain_text(BUYER["company_name"])
        expect(article).to_contain_text(BUYER_NPWP)
        expect(article).to_contain_text(DESCRIPTION)
        for amount in TOTALS[language]:
            expect(page.locator(".invoice__totals")).to_contain_text(amount)
        expect(page.locator(".invoice__totals")).to_contain_text("11/12")
        expect(page.locator(".invoice__totals")).to_contain_text("12%")
        expect(page.locator(".invoice-pay__buttons button[name=provider][value=midtrans]")).to_be_visible()
        expect(page.locator(".pay-instructions__code")).to_contain_text(f"{invoice.unique_code:03d}")
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / f"invoice-tax-{size}-{language}.png"), full_page=True)
        assert page.evaluate(WIDER_THAN_THE_SCREEN) == []
        assert page.evaluate(OVERFLOWING) == []

        with page.expect_download() as download_info:
            page.locator(f"a[href='/billing/invoices/{invoice.pk}/pdf/']").click()
        download = download_info.value
        assert download.suggested_filename == f"{invoice.number}.pdf"
        content = Path(download.path()).read_bytes()
        (SHOTS / f"invoice-tax-{language}.pdf").write_bytes(content)
        text = pdf_text(content)
        assert invoice.number in text and f"NPWP {BUYER_NPWP}" in text and f"NPWP {SELLER['tax_id']}" in text
        assert f"Total {TOTALS[language][3]}" in text
    finally:
        context.close()


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_staff_record_a_withholding_slip_with_its_scan_on_the_invoice_page(
    browser, live_server, settings, tmp_path, size
):
    settings.MEDIA_ROOT = str(tmp_path)
    set_seller(factories.make_user("admin"))
    customer = factories.make_user(email="budi.santoso@example.com")
    buyer.save_details(customer, BUYER)
    invoice = taxed_invoice(customer)
    staff = factories.make_user("staff", email="sari@example.com", password=PASSWORD)
    scan = tmp_path / "bukti-potong.pdf"
    scan.write_bytes(b"%PDF-1.4\n% a scanned slip\n")

    context = browser.new_context(viewport=SIZES[size], locale="en-US")
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        _log_in(page, live_server.url, staff.email, lambda: factories.totp_code(staff))
        page.goto(f"{live_server.url}/staff/invoices/{invoice.pk}/")
        form = page.locator("#withholding-form")
        expect(form.locator("input[name=amount]")).to_have_value("20000")
        form.locator("input[name=number]").fill("BP-0042/2026")
        form.locator("input[name=scan]").set_input_files(str(scan))
        form.locator("button[type=submit]").click()
        expect(page.locator(".messages")).to_contain_text("Withholding slip BP-0042/2026")
        expect(page.locator(".invoice__totals")).to_contain_text("Rp1,090,000")
        slip = WithholdingSlip.objects.get(invoice=invoice)
        assert slip.amount == Decimal(20000) and slip.recorded_by == staff
        expect(page.locator(f"a[href='/staff/withholding-slips/{slip.pk}/scan/']")).to_be_visible()
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / f"invoice-staff-{size}.png"), full_page=True)
        assert page.evaluate(WIDER_THAN_THE_SCREEN) == []
        assert page.evaluate(OVERFLOWING) == []
    finally:
        context.close()
