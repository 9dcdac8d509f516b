"""The invoices issued with tax in a period export as the XML Coretax imports: a TaxInvoiceBulk with the
seller's TIN and one TaxInvoice per invoice (transaction code 04 for a tax base of 11/12 of the price), one
GoodService per line whose amounts add up to the invoice's price before tax, tax base (DPP) and PPN exactly,
the rounding remainder on the last line. Void and untaxed invoices, and invoices outside the period, are
left out. Buyers are identified by NPWP (a 15-digit one gets a leading 0), NIK, or neither. The export is
refused, with the reason, without the seller's NPWP, for nothing to export or for invoices not in rupiah."""

from datetime import date, datetime
from decimal import Decimal

import pytest
from django.utils import timezone
from lxml import etree

from billing import buyer, invoices, payments, seller, tax_export
from billing.models import Invoice
from tests import factories

pytestmark = pytest.mark.django_db

XSI = "{http://www.w3.org/2001/XMLSchema-instance}"
JANUARY = (date(2026, 1, 1), date(2026, 1, 31))
INVOICE_FIELDS = [
    "TaxInvoiceDate",
    "TaxInvoiceOpt",
    "TrxCode",
    "AddInfo",
    "CustomDoc",
    "RefDesc",
    "FacilityStamp",
    "SellerIDTKU",
    "BuyerTin",
    "BuyerDocument",
    "BuyerCountry",
    "BuyerDocumentNumber",
    "BuyerName",
    "BuyerAdress",
    "BuyerEmail",
    "BuyerIDTKU",
    "ListOfGoodService",
]
GOOD_FIELDS = [
    "Opt",
    "Code",
    "Name",
    "Unit",
    "Price",
    "Qty",
    "TotalDiscount",
    "TaxBase",
    "OtherTaxBase",
    "VATRate",
    "VAT",
    "STLGRate",
    "STLG",
]


@pytest.fixture(autouse=True)
def law(settings):
    settings.TAX_RATE, settings.TAX_BASE_FRACTION, settings.PRICES_INCLUDE_TAX = "12", "11/12", False
    settings.PANEL_CURRENCY = "IDR"
    return settings


@pytest.fixture
def selling(admin_user):
    """The seller, with an old 15-digit NPWP."""
    values = {name: "" for name in seller.FIELDS}
    values.update(legal_name="PT Contoh Hosting", address="Jakarta", tax_id="01.234.567.8-901.000")
    seller.save_profile(values, by=admin_user)


def at(day: int, hour: int = 10, minute: int = 0, month: int = 1, year: int = 2026) -> datetime:
    """A moment in the installation's time zone (Jakarta)."""
    return timezone.make_aware(datetime(year, month, day, hour, minute))


def line(
    price: str, kind: str = "plan", quantity: str = "1", description: str = "Small VPS"
) -> invoices.Line:
    return invoices.Line(
        kind=kind, description=description, unit_price=Decimal(price), quantity=Decimal(quantity)
    )


def company(tax_id_kind: str = "npwp", tax_id: str = "0123456789012345", name: str = "PT Pembeli Jaya"):
    account = factories.make_user()
    buyer.save_details(
        account,
        {
            "company_name": name,
            "tax_id_kind": tax_id_kind,
            "tax_id": tax_id,
            "billing_address": "Jl. Thamrin 2\nJakarta 10350",
        },
    )
    return account


def exported(start: date = JANUARY[0], end: date = JANUARY[1]) -> etree._Element:
    return etree.fromstring(tax_export.export(start, end).xml)


def tax_invoices(root) -> list:
    return root.findall("ListOfTaxInvoice/TaxInvoice")


def field(element, name: str) -> str:
    return element.findtext(name)


def goods(element) -> list:
    return element.findall("ListOfGoodService/GoodService")


def amount(good, name: str) -> Decimal:
    return Decimal(good.findtext(name))


def test_an_invoice_with_tax_exports_with_its_parties_lines_and_exact_amounts(selling):
    account = company()
    invoice = invoices.issue_invoice(
        account,
        [
            line("150000"),
            line("100", kind="hourly", quantity="720", description="Hourly use"),
            line("74.4048", kind="hourly", quantity="300", description="More hourly use"),
            line("4550", kind="manual", description="Setup fee"),
        ],
        at=at(15),
    )
    # 150,000 + 72,000 + 22,321 + 4,550 = 248,871 before tax; DPP 228,131.75 is 228,132; PPN 27,375.81 is
    # 27,376.
    assert (invoice.subtotal, invoice.tax_base, invoice.tax) == (
        Decimal("248871"),
        Decimal("228132"),
        Decimal("27376"),
    )
    root = exported()
    assert root.tag == "TaxInvoiceBulk"
    assert root.get(f"{XSI}noNamespaceSchemaLocation") == "TaxInvoice.xsd"
    assert root.findtext("TIN") == "0012345678901000"
    (element,) = tax_invoices(root)
    assert [child.tag for child in element] == INVOICE_FIELDS
    assert {name: field(element, name) for name in INVOICE_FIELDS[:-1]} == {
        "TaxInvoiceDate": "2026-01-15",
        "TaxInvoiceOpt": "Normal",
        "TrxCode": "04",
        "AddInfo": "",
        "CustomDoc": "",
        "RefDesc": invoice.number,
        "FacilityStamp": "",
        "SellerIDTKU": "0012345678901000000000",
        "BuyerTin": "0123456789012345",
        "BuyerDocument": "TIN",
        "BuyerCountry": "IDN",
        "BuyerDocumentNumber": "-",
        "BuyerName": "PT Pembeli Jaya",
        "BuyerAdress": "Jl. Thamrin 2, Jakarta 10350",
        "BuyerEmail": account.email,
        "BuyerIDTKU": "0123456789012345000000",
    }
    plan, hours, more_hours, fee = goods(element)
    assert [child.tag for child in plan] == GOOD_FIELDS
    for good in (plan, hours, more_hours, fee):
        assert (good.findtext("Opt"), good.findtext("Code"), good.findtext("TotalDiscount")) == (
            "B",
            "000000",
            "0",
        )
        assert (good.findtext("VATRate"), good.findtext("STLGRate"), good.findtext("STLG")) == (
            "12",
            "0",
            "0",
        )
        assert amount(good, "Price") * amount(good, "Qty") == amount(good, "TaxBase")
    # A plan's month, 720 hours at 100, and what does not divide into whole rupiah as one item.
    assert [
        (g.findtext("Unit"), g.findtext("Price"), g.findtext("Qty")) for g in (plan, hours, more_hours, fee)
    ] == [
        ("UM.0024", "150000", "1"),
        ("UM.0027", "100", "720"),
        ("UM.0033", "22321", "1"),
        ("UM.0033", "4550", "1"),
    ]
    assert [amount(g, "TaxBase") for g in (plan, hours, more_hours, fee)] == [
        Decimal("150000"),
        Decimal("72000"),
        Decimal("22321"),
        Decimal("4550"),
    ]
    for name, expected in (
        ("TaxBase", invoice.subtotal),
        ("OtherTaxBase", invoice.tax_base),
        ("VAT", invoice.tax),
    ):
        assert sum(amount(good, name) for good in (plan, hours, more_hours, fee)) == expected
    assert amount(plan, "OtherTaxBase") == Decimal("137500") and amount(plan, "VAT") == Decimal("16500")


def test_the_invoices_rounding_remainder_goes_to_its_last_line(selling):
    # Three lines of 4,550: the invoice's PPN is 1,502 (rounded once), a third of it 500.67 a line.
    invoices.issue_invoice(company(), [line("4550"), line("4550"), line("4550")], at=at(2))
    (element,) = tax_invoices(exported())
    lines = goods(element)
    assert [amount(good, "VAT") for good in lines] == [Decimal("501"), Decimal("501"), Decimal("500")]
    assert [amount(good, "OtherTaxBase") for good in lines] == [
        Decimal("4171"),
        Decimal("4171"),
        Decimal("4171"),
    ]
    assert sum(amount(good, "OtherTaxBase") for good in lines) == Decimal("12513")


def test_prices_with_tax_included_export_the_price_before_tax(law, selling):
    law.PRICES_INCLUDE_TAX = True
    invoices.issue_invoice(company(), [line("150000")], at=at(3))
    (element,) = tax_invoices(exported())
    (good,) = goods(element)
    assert [good.findtext(name) for name in ("Price", "Qty", "TaxBase", "OtherTaxBase", "VAT")] == [
        "135135",
        "1",
        "135135",
        "123874",
        "14865",
    ]


def test_a_tax_base_of_the_whole_price_exports_with_transaction_code_01(law, selling):
    law.TAX_BASE_FRACTION = "1"
    invoices.issue_invoice(company(), [line("150000")], at=at(4))
    (element,) = tax_invoices(exported())
    assert field(element, "TrxCode") == "01"
    (good,) = goods(element)
    assert [good.findtext(name) for name in ("TaxBase", "OtherTaxBase", "VATRate", "VAT")] == [
        "150000",
        "150000",
        "12",
        "18000",
    ]


def test_void_untaxed_and_out_of_period_invoices_are_left_out(law, selling, staff):
    account = company()
    first = invoices.issue_invoice(account, [line("1000")], at=at(1, 0, 0))
    last = invoices.issue_invoice(account, [line("2000")], at=at(31, 23, 59))
    paid = invoices.issue_invoice(account, [line("3000")], at=at(10))
    payments.record_payment(account, first.total + paid.total + last.total, "BCA-1")
    voided = invoices.issue_invoice(account, [line("4000")], at=at(11))
    invoices.void_invoice(voided, by=staff)
    invoices.issue_invoice(account, [line("5000")], at=at(31, 23, 59, month=12, year=2025))
    invoices.issue_invoice(account, [line("6000")], at=at(1, 0, 0, month=2))
    law.TAX_RATE = "0"
    invoices.issue_invoice(account, [line("7000")], at=at(12))
    numbers = [field(element, "RefDesc") for element in tax_invoices(exported())]
    assert numbers == [first.number, paid.number, last.number]
    paid.refresh_from_db()
    assert paid.status == Invoice.Status.PAID  # paid invoices are tax invoices too


@pytest.mark.parametrize(
    "kind, written, document, tin, number, idtku",
    [
        ("npwp", "0123456789012345", "TIN", "0123456789012345", "-", "0123456789012345000000"),
        ("npwp", "98.765.432.1-012.000", "TIN", "0987654321012000", "-", "0987654321012000000000"),
        ("nik", "3171234567890123", "National ID", "0000000000000000", "3171234567890123", "000000"),
        ("", "", "Other ID", "0000000000000000", "-", "000000"),
    ],
)
def test_buyers_are_identified_by_npwp_nik_or_neither(selling, kind, written, document, tin, number, idtku):
    account = company(tax_id_kind=kind, tax_id=written)
    invoices.issue_invoice(account, [line("150000")], at=at(5))
    (element,) = tax_invoices(exported())
    assert [
        field(element, name) for name in ("BuyerDocument", "BuyerTin", "BuyerDocumentNumber", "BuyerIDTKU")
    ] == [
        document,
        tin,
        number,
        idtku,
    ]


def test_a_buyer_without_billing_details_is_named_after_their_account(selling):
    account = factories.make_user()
    invoices.issue_invoice(account, [line("150000")], at=at(6))
    (element,) = tax_invoices(exported())
    assert field(element, "BuyerName") == (account.get_full_name() or account.email)
    assert field(element, "BuyerDocument") == "Other ID"


def test_the_export_is_refused_with_the_reason(law, admin_user):
    invoices.issue_invoice(company(), [line("150000")], at=at(7))
    with pytest.raises(tax_export.ExportRefused) as refused:
        tax_export.export(*JANUARY)
    assert "The seller's NPWP is not set" in refused.value.message

    values = {name: "" for name in seller.FIELDS}
    seller.save_profile({**values, "tax_id": "12345"}, by=admin_user)
    with pytest.raises(tax_export.ExportRefused) as refused:
        tax_export.export(*JANUARY)
    assert "does not have 15 or 16 digits" in refused.value.message

    seller.save_profile({**values, "tax_id": "0123456789012345"}, by=admin_user)
    with pytest.raises(tax_export.ExportRefused) as refused:
        tax_export.export(date(2026, 2, 1), date(2026, 2, 28))
    assert refused.value.message == "No invoice with tax was issued in this period."
    with pytest.raises(tax_export.ExportRefused) as refused:
        tax_export.export(date(2026, 1, 31), date(2026, 1, 1))
    assert refused.value.message == "The start of the period is after its end."

    law.PANEL_CURRENCY = "USD"
    dollars = invoices.issue_invoice(company(), [line("12.34")], at=at(8))
    with pytest.raises(tax_export.ExportRefused) as refused:
        tax_export.export(*JANUARY)
    assert dollars.number in refused.value.message and "not in rupiah" in refused.value.message


def test_shares_add_up_and_none_is_negative_even_for_a_last_line_worth_nothing():
    assert tax_export.allocate(Decimal("1502"), [Decimal("4550")] * 3) == [
        Decimal("501"),
        Decimal("501"),
        Decimal("500"),
    ]
    # 1 shared over 1, 1 and 0: the first two would round up to 1 each and leave the last -1.
    shares = tax_export.allocate(Decimal("1"), [Decimal("1"), Decimal("1"), Decimal("0")])
    assert sum(shares) == Decimal("1") and all(share >= 0 for share in shares)


def test_a_description_with_a_control_character_still_makes_a_valid_file(selling):
    invoices.issue_invoice(company(), [line("150000", kind="manual", description="Setup\x0b fee")], at=at(9))
    (element,) = tax_invoices(exported())
    assert goods(element)[0].findtext("Name") == "Setup fee"
