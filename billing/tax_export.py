"""The export of issued invoices for the tax office: output tax invoices (Faktur Pajak Keluaran) as the XML
file DJP's Coretax imports (its published template: a `TaxInvoiceBulk` with the seller's `TIN` and one
`TaxInvoice` per invoice, one `GoodService` per invoice line). docs/tax-export.md describes the format, the
mapping and what a tax officer does with the file.

The export takes the invoices issued in a range of local dates that charged tax (tax_rate > 0) and were
not voided, and writes what they recorded when issued (billing.invoices): the breakdown, the rule and the
buyer. The invoice was rounded once (billing.tax); its lines share its price before tax (TaxBase), its tax
base (OtherTaxBase, DPP nilai lain) and its PPN (VAT) in proportion to their amounts, and the last line
takes what rounding leaves, so that the lines add up to the invoice exactly."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction

from django.db.models import QuerySet
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from lxml import etree

from . import seller
from .errors import BillingError
from .models import Invoice, InvoiceLine
from .money import ZERO
from .tax import round_exact

XSI = "http://www.w3.org/2001/XMLSchema-instance"
SCHEMA = "TaxInvoice.xsd"  # the template's xsi:noNamespaceSchemaLocation
DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
# Coretax takes at most this many tax invoices in one file.
MAX_INVOICES = 1000
# Tax invoices are in rupiah; invoices in another currency would need the Minister of Finance's rate.
CURRENCY = "IDR"
COUNTRY = "IDN"
NORMAL = "Normal"  # TaxInvoiceOpt: a normal tax invoice (not a replacement)
TRX_OTHER_BASE = "04"  # TrxCode: PPN on a tax base of another value (DPP nilai lain, 11/12 of the price)
TRX_FULL_PRICE = "01"  # TrxCode: PPN on the price itself (a tax base fraction of 1)
SERVICE = "B"  # Opt: A goods, B services
SERVICE_CODE = "000000"  # Code: DJP's code for goods and services not in its list
UNIT_MONTH = "UM.0024"  # Bulan
UNIT_HOUR = "UM.0027"  # Jam
UNIT_OTHER = "UM.0033"  # Lainnya
HEAD_OFFICE = "000000"  # the place of business (TKU) after the TIN: the head office
NO_TIN = "0" * 16  # BuyerTin of a buyer without an NPWP
TIN = "TIN"  # BuyerDocument: the buyer's NPWP
NATIONAL_ID = "National ID"  # BuyerDocument: the buyer's NIK
OTHER_ID = "Other ID"  # BuyerDocument: neither (BuyerDocumentNumber "-")
NO_DOCUMENT = "-"
# Line names are written in Indonesian, the tax office's language.
DOCUMENT_LANGUAGE = "id"
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


class ExportRefused(BillingError):
    """The export cannot be made: the message says why (for staff, and the command's error)."""


@dataclass(frozen=True)
class Buyer:
    tin: str
    document: str
    document_number: str
    idtku: str


@dataclass(frozen=True)
class GoodService:
    name: str
    unit: str
    price: Decimal
    quantity: Decimal
    tax_base: Decimal
    other_tax_base: Decimal
    vat_rate: Decimal
    vat: Decimal


@dataclass(frozen=True)
class TaxExport:
    start: date
    end: date
    invoices: list[Invoice]
    xml: bytes

    @property
    def filename(self) -> str:
        return f"faktur-keluaran-{self.start.isoformat()}-{self.end.isoformat()}.xml"


def tin_of(tax_id: str) -> str:
    """An NPWP as Coretax's 16-digit TIN (an old 15-digit NPWP gets a leading 0); "" for anything else."""
    digits = re.sub(r"[.\-\s]", "", tax_id)
    if not digits.isdigit() or len(digits) not in (15, 16) or not digits.strip("0"):
        return ""
    return digits.zfill(16)


def seller_tin() -> str:
    """The seller's NPWP as a TIN, from the seller's profile; ExportRefused when it is not set or is not
    one."""
    tax_id = seller.profile().tax_id.strip()
    if not tax_id:
        raise ExportRefused(
            _(
                "The seller's NPWP is not set: an admin sets it on the billing settings page, and then the "
                "tax invoices can be exported."
            )
        )
    tin = tin_of(tax_id)
    if not tin:
        raise ExportRefused(
            _(
                "The seller's NPWP %(npwp)s does not have 15 or 16 digits: correct it on the billing "
                "settings page."
            )
            % {"npwp": tax_id}
        )
    return tin


def invoices_between(start: date, end: date) -> QuerySet[Invoice]:
    """Invoices issued from `start` to `end` (local dates, both included) that charged tax and stand (open
    or paid: not void), oldest first, with their lines and accounts."""
    return (
        Invoice.objects.filter(
            issued_at__gte=_midnight(start),
            issued_at__lt=_midnight(end + timedelta(days=1)),
            status__in=[Invoice.Status.OPEN, Invoice.Status.PAID],
            tax_rate__gt=0,
        )
        .select_related("account")
        .prefetch_related("lines")
        .order_by("issued_at", "number")
    )


def selection(start: date, end: date) -> list[Invoice]:
    """The invoices `export` would write for this period (none is not refused here); ExportRefused when the
    period cannot be exported: backwards, more invoices than one file takes, invoices not in rupiah."""
    if start > end:
        raise ExportRefused(_("The start of the period is after its end."))
    invoices = list(invoices_between(start, end)[: MAX_INVOICES + 1])
    if len(invoices) > MAX_INVOICES:
        raise ExportRefused(
            _("Coretax takes at most %(count)s tax invoices in one file: export a shorter period.")
            % {"count": MAX_INVOICES}
        )
    foreign = [invoice.number for invoice in invoices if invoice.currency != CURRENCY]
    if foreign:
        raise ExportRefused(
            ngettext(
                "Invoice %(numbers)s is not in rupiah: tax invoices are, at the Minister of Finance's "
                "exchange rate, so it must be entered in Coretax by hand.",
                "Invoices %(numbers)s are not in rupiah: tax invoices are, at the Minister of Finance's "
                "exchange rate, so they must be entered in Coretax by hand.",
                len(foreign),
            )
            % {"numbers": ", ".join(foreign)}
        )
    return invoices


def export(start: date, end: date) -> TaxExport:
    """The Coretax XML of the tax invoices issued from `start` to `end`; ExportRefused with the reason when
    it cannot be made (no seller NPWP, nothing to export, or as `selection` refuses)."""
    tin = seller_tin()
    invoices = selection(start, end)
    if not invoices:
        raise ExportRefused(_("No invoice with tax was issued in this period."))
    return TaxExport(start=start, end=end, invoices=invoices, xml=to_xml(tin, invoices))


def to_xml(tin: str, invoices: list[Invoice]) -> bytes:
    """The TaxInvoiceBulk document of these invoices, sold by the seller whose TIN is `tin`."""
    root = etree.Element("TaxInvoiceBulk", nsmap={"xsi": XSI})
    root.set(etree.QName(XSI, "noNamespaceSchemaLocation"), SCHEMA)
    _add(root, "TIN", tin)
    listing = etree.SubElement(root, "ListOfTaxInvoice")
    with translation.override(DOCUMENT_LANGUAGE):
        for invoice in invoices:
            _add_invoice(listing, tin, invoice)
    return DECLARATION + etree.tostring(root, encoding="UTF-8", pretty_print=True)


def buyer_of(invoice: Invoice) -> Buyer:
    """Who the invoice was made out to, as Coretax identifies buyers: by NPWP (TIN), by NIK (National ID,
    with the TIN all zeros), or neither (Other ID, "-")."""
    kind, digits = invoice.buyer_tax_id_kind, invoice.buyer_tax_id
    if kind == "npwp" and (tin := tin_of(digits)):
        return Buyer(tin=tin, document=TIN, document_number=NO_DOCUMENT, idtku=tin + HEAD_OFFICE)
    if kind == "nik" and len(digits) == 16 and digits.isdigit() and digits.strip("0"):
        return Buyer(tin=NO_TIN, document=NATIONAL_ID, document_number=digits, idtku=HEAD_OFFICE)
    return Buyer(tin=NO_TIN, document=OTHER_ID, document_number=NO_DOCUMENT, idtku=HEAD_OFFICE)


def transaction_code(invoice: Invoice) -> str:
    """04 when the tax base is another value than the price (11/12 of it), 01 when it is the price."""
    return TRX_OTHER_BASE if _fraction(invoice) < 1 else TRX_FULL_PRICE


def goods_of(invoice: Invoice) -> list[GoodService]:
    """One GoodService per line of the invoice, in the active language, whose amounts add up to the
    invoice's price before tax, tax base and PPN exactly."""
    lines: list[InvoiceLine] = list(invoice.lines.all())
    weights = [line.amount for line in lines]
    tax_bases = allocate(invoice.subtotal, weights)
    other_tax_bases = allocate(invoice.tax_base, weights)
    vats = allocate(invoice.tax, weights)
    goods = []
    for line, tax_base, other_tax_base, vat in zip(lines, tax_bases, other_tax_bases, vats, strict=True):
        quantity, price = _quantity_and_price(line, tax_base)
        goods.append(
            GoodService(
                name=line.description_text,
                unit=_unit(line, quantity),
                price=price,
                quantity=quantity,
                tax_base=tax_base,
                other_tax_base=other_tax_base,
                vat_rate=invoice.tax_rate,
                vat=vat,
            )
        )
    return goods


def allocate(total: Decimal, weights: list[Decimal]) -> list[Decimal]:
    """`total` shared in proportion to `weights`, each share rounded to the currency's unit and the last
    taking what rounding leaves, so that the shares add up to `total` exactly. (Should rounding up the
    others leave the last a negative share, which needs a last line worth almost nothing, the shares are
    rounded as running totals instead: none is negative then.)"""
    if not weights:
        return []
    whole = sum(weights, ZERO)
    if whole <= 0 or any(weight < 0 for weight in weights):
        return [ZERO] * (len(weights) - 1) + [total]
    shares = [round_exact(Fraction(total) * Fraction(weight) / Fraction(whole)) for weight in weights[:-1]]
    last = total - sum(shares, ZERO)
    if last >= 0:
        return [*shares, last]
    running, before, shares = ZERO, ZERO, []
    for weight in weights:
        running += weight
        upto = round_exact(Fraction(total) * Fraction(running) / Fraction(whole))
        shares.append(upto - before)
        before = upto
    return shares


def _add_invoice(listing, tin: str, invoice: Invoice) -> None:
    buyer = buyer_of(invoice)
    element = etree.SubElement(listing, "TaxInvoice")
    for tag, value in (
        ("TaxInvoiceDate", timezone.localtime(invoice.issued_at).date().isoformat()),
        ("TaxInvoiceOpt", NORMAL),
        ("TrxCode", transaction_code(invoice)),
        ("AddInfo", ""),
        ("CustomDoc", ""),
        ("RefDesc", invoice.number),
        ("FacilityStamp", ""),
        ("SellerIDTKU", tin + HEAD_OFFICE),
        ("BuyerTin", buyer.tin),
        ("BuyerDocument", buyer.document),
        ("BuyerCountry", COUNTRY),
        ("BuyerDocumentNumber", buyer.document_number),
        ("BuyerName", invoice.buyer_name or invoice.account.email),
        (
            "BuyerAdress",
            ", ".join(part.strip() for part in invoice.buyer_address.splitlines() if part.strip()),
        ),
        ("BuyerEmail", invoice.account.email),
        ("BuyerIDTKU", buyer.idtku),
    ):
        _add(element, tag, value)
    goods = etree.SubElement(element, "ListOfGoodService")
    for good in goods_of(invoice):
        item = etree.SubElement(goods, "GoodService")
        for tag, value in (
            ("Opt", SERVICE),
            ("Code", SERVICE_CODE),
            ("Name", good.name),
            ("Unit", good.unit),
            ("Price", _number(good.price)),
            ("Qty", _number(good.quantity)),
            ("TotalDiscount", "0"),
            ("TaxBase", _number(good.tax_base)),
            ("OtherTaxBase", _number(good.other_tax_base)),
            ("VATRate", _number(good.vat_rate)),
            ("VAT", _number(good.vat)),
            ("STLGRate", "0"),
            ("STLG", "0"),
        ):
            _add(item, tag, value)


def _add(parent, tag: str, text: str) -> None:
    # XML 1.0 has no place for control characters (a pasted description could hold one).
    etree.SubElement(parent, tag).text = CONTROL_CHARACTERS.sub("", text)


def _number(value: Decimal) -> str:
    """An amount as the template writes it: digits and a decimal point, no grouping, no trailing zeros."""
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def _quantity_and_price(line: InvoiceLine, tax_base: Decimal) -> tuple[Decimal, Decimal]:
    """The line's quantity and the unit price before tax that makes Price × Qty its TaxBase exactly: its
    own quantity when a whole number divides the tax base into whole units of currency, else 1."""
    quantity = line.quantity
    if quantity >= 1 and quantity == quantity.to_integral_value():
        price = tax_base / quantity
        if price == price.to_integral_value():
            return quantity.to_integral_value(), price.to_integral_value()
    return Decimal(1), tax_base


def _unit(line: InvoiceLine, quantity: Decimal) -> str:
    """A month for a plan's period, hours for hourly use counted in hours; otherwise "other"."""
    if line.kind == InvoiceLine.Kind.PLAN and quantity == 1:
        return UNIT_MONTH
    if line.kind == InvoiceLine.Kind.HOURLY and quantity == line.quantity:
        return UNIT_HOUR
    return UNIT_OTHER


def _fraction(invoice: Invoice) -> Fraction:
    try:
        return Fraction(invoice.tax_base_fraction) if invoice.tax_base_fraction else Fraction(1)
    except (ValueError, ZeroDivisionError):
        return Fraction(1)


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))
