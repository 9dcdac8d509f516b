"""`manage.py export_tax_invoices --from … --to … [--output FILE]` writes the period's output tax invoices as
Coretax's XML to standard output or to the file; what cannot be exported is an error with the reason."""

import io
from datetime import datetime
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from lxml import etree

from billing import buyer, invoices, seller
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def law(settings):
    settings.TAX_RATE, settings.TAX_BASE_FRACTION, settings.PRICES_INCLUDE_TAX = "12", "11/12", False
    settings.PANEL_CURRENCY = "IDR"


@pytest.fixture
def issued(admin_user):
    values = {name: "" for name in seller.FIELDS}
    seller.save_profile({**values, "legal_name": "PT Contoh", "tax_id": "0123456789012345"}, by=admin_user)
    account = factories.make_user()
    buyer.save_details(
        account,
        {
            "company_name": "PT Pembeli",
            "tax_id_kind": "nik",
            "tax_id": "3171234567890123",
            "billing_address": "",
        },
    )
    line = invoices.Line(kind="plan", description="Small VPS", unit_price=Decimal("150000"))
    moment = timezone.make_aware(datetime(2026, 3, 14, 9))
    return invoices.issue_invoice(account, [line], at=moment)


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("export_tax_invoices", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_xml_goes_to_standard_output(issued):
    out, _err = run("--from", "2026-03-01", "--to", "2026-03-31")
    assert out.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<TaxInvoiceBulk ')
    root = etree.fromstring(out.encode())
    assert root.findtext("TIN") == "0123456789012345"
    (element,) = root.findall("ListOfTaxInvoice/TaxInvoice")
    assert element.findtext("RefDesc") == issued.number
    assert element.findtext("BuyerDocument") == "National ID"
    assert element.findtext("ListOfGoodService/GoodService/VAT") == "16500"


def test_the_xml_goes_to_a_file_with_output(issued, tmp_path):
    target = tmp_path / "march.xml"
    out, err = run("--from", "2026-03-14", "--to", "2026-03-14", "--output", str(target))
    assert out == ""
    assert f"1 tax invoices issued from 2026-03-14 to 2026-03-14 written to {target}" in err
    root = etree.parse(str(target)).getroot()
    assert [e.findtext("RefDesc") for e in root.findall("ListOfTaxInvoice/TaxInvoice")] == [issued.number]


@pytest.mark.parametrize(
    "args, reason",
    [
        (("--from", "2026-04-01", "--to", "2026-04-30"), "No invoice with tax was issued in this period."),
        (("--from", "2026-03-31", "--to", "2026-03-01"), "The start of the period is after its end."),
        (("--from", "14/03/2026", "--to", "2026-03-31"), "not a date like 2026-01-31"),
        (("--to", "2026-03-31"), "--from"),
    ],
)
def test_what_cannot_be_exported_is_an_error_with_the_reason(issued, tmp_path, args, reason):
    target = tmp_path / "none.xml"
    with pytest.raises(CommandError) as failed:
        run(*args, "--output", str(target))
    assert reason in str(failed.value)
    assert not target.exists()


def test_without_the_sellers_npwp_nothing_is_exported(db):
    with pytest.raises(CommandError) as failed:
        run("--from", "2026-03-01", "--to", "2026-03-31")
    assert "The seller's NPWP is not set" in str(failed.value)
