"""Staff pick a period on the tax export page, see its invoices with tax and download them as Coretax's
XML. The page refuses to export, and says why, while the seller's NPWP is not set. Customers cannot reach
it; visitors are sent to log in."""

import html
import re
from datetime import date, datetime
from decimal import Decimal

import pytest
from django.utils import timezone
from lxml import etree

from billing import buyer, invoices, seller
from billing.export_views import last_month
from tests import factories

pytestmark = pytest.mark.django_db

URL = "/staff/tax-export/"


@pytest.fixture(autouse=True)
def law(settings):
    settings.TAX_RATE, settings.TAX_BASE_FRACTION, settings.PRICES_INCLUDE_TAX = "12", "11/12", False
    settings.PANEL_CURRENCY = "IDR"


def set_seller_npwp(by, npwp: str) -> None:
    values = {name: "" for name in seller.FIELDS}
    seller.save_profile({**values, "legal_name": "PT Contoh", "tax_id": npwp}, by=by)


def issue(account, day: int, price: str = "150000"):
    line = invoices.Line(kind="plan", description="Small VPS", unit_price=Decimal(price))
    return invoices.issue_invoice(account, [line], at=timezone.make_aware(datetime(2026, 5, day, 9)))


def text(response) -> str:
    """The page's text without tags, entities decoded, spaces squeezed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())))


@pytest.fixture
def may(admin_user):
    """Two invoices with tax in May 2026, one to a company with an NPWP, one to a customer with none."""
    set_seller_npwp(admin_user, "0123456789012345")
    company = factories.make_user()
    buyer.save_details(
        company,
        {
            "company_name": "PT Pembeli",
            "tax_id_kind": "npwp",
            "tax_id": "0987654321098765",
            "billing_address": "",
        },
    )
    return issue(company, 4), issue(factories.make_user(), 20, "50000")


def test_staff_see_the_periods_invoices_and_download_their_xml(client, staff, may):
    first, second = may
    client.force_login(staff)
    page = client.get(URL, {"from": "2026-05-01", "to": "2026-05-31"})
    assert page.status_code == 200
    shown = text(page)
    assert first.number in shown and second.number in shown
    assert "PT Pembeli" in shown and "NPWP 0987654321098765" in shown and "No NPWP or NIK" in shown
    assert "1 invoice has no NPWP or NIK for its buyer" in shown
    assert "2 invoices" in shown
    assert "Rp22,000" in shown  # the PPN of both: 16,500 + 5,500

    download = client.get(URL, {"from": "2026-05-01", "to": "2026-05-31", "download": "1"})
    assert download.status_code == 200
    assert download["Content-Type"].startswith("application/xml")
    assert (
        download["Content-Disposition"] == 'attachment; filename="faktur-keluaran-2026-05-01-2026-05-31.xml"'
    )
    root = etree.fromstring(download.content)
    assert root.findtext("TIN") == "0123456789012345"
    assert [e.findtext("RefDesc") for e in root.findall("ListOfTaxInvoice/TaxInvoice")] == [
        first.number,
        second.number,
    ]
    # A shorter period holds only what was issued in it.
    root = etree.fromstring(
        client.get(URL, {"from": "2026-05-10", "to": "2026-05-31", "download": "1"}).content
    )
    assert [e.findtext("RefDesc") for e in root.findall("ListOfTaxInvoice/TaxInvoice")] == [second.number]


def test_the_page_opens_on_last_month(client, staff):
    client.force_login(staff)
    start, end = last_month(timezone.localdate())
    page = client.get(URL).content.decode()
    assert f'value="{start.isoformat()}"' in page and f'value="{end.isoformat()}"' in page
    assert last_month(date(2026, 3, 15)) == (date(2026, 2, 1), date(2026, 2, 28))
    assert last_month(date(2026, 1, 1)) == (date(2025, 12, 1), date(2025, 12, 31))


def test_without_the_sellers_npwp_the_page_says_so_and_downloads_nothing(client, staff, admin_user):
    issue(factories.make_user(), 4)
    client.force_login(staff)
    response = client.get(URL, {"from": "2026-05-01", "to": "2026-05-31", "download": "1"})
    assert response.status_code == 200
    assert "Content-Disposition" not in response
    assert "The seller's NPWP is not set" in text(response)
    assert 'name="download" value="1" disabled' in response.content.decode()
    # Once an admin sets it, the same request downloads the file.
    set_seller_npwp(admin_user, "01.234.567.8-901.000")
    response = client.get(URL, {"from": "2026-05-01", "to": "2026-05-31", "download": "1"})
    assert "attachment" in response["Content-Disposition"]
    assert etree.fromstring(response.content).findtext("TIN") == "0012345678901000"


@pytest.mark.parametrize(
    "query, message",
    [
        ({"from": "2026-05-31", "to": "2026-05-01"}, "The start of the period is after its end."),
        ({"from": "31 May", "to": "2026-05-31"}, "Enter a valid date."),
        ({"from": "2026-06-01", "to": "2026-06-30"}, "No invoice with tax was issued in this period."),
    ],
)
def test_a_period_that_cannot_be_exported_gets_a_message_and_no_file(client, staff, may, query, message):
    client.force_login(staff)
    response = client.get(URL, {**query, "download": "1"})
    assert response.status_code == 200
    assert "Content-Disposition" not in response
    assert message in text(response)


def test_customers_cannot_reach_the_page_and_visitors_must_log_in(client, customer, may):
    assert client.get(URL).status_code == 302 and "login" in client.get(URL)["Location"]
    client.force_login(customer)
    assert client.get(URL).status_code == 403
    response = client.get(URL, {"from": "2026-05-01", "to": "2026-05-31", "download": "1"})
    assert response.status_code == 403 and b"TaxInvoiceBulk" not in response.content
