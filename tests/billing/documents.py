"""Shared by the tests of invoice documents (the page, the PDFs, credit notes, withholding slips): a seller
with an NPWP and a bank account, a company customer with its own NPWP and address, an invoice with tax, and
the text of a PDF."""

from __future__ import annotations

import html
import io
import re
from decimal import Decimal

from pypdf import PdfReader

from billing import buyer, invoices, seller
from billing.models import Invoice
from panel.models import User
from tests import factories

SELLER = {
    "legal_name": "PT Awan Nusantara Sejahtera",
    "address": "Jl. Jenderal Sudirman Kav. 52-53\nJakarta Selatan 12190",
    "tax_id": "01.234.567.8-901.000",
    "email": "tagihan@awan-nusantara.co.id",
    "phone": "+62 21 555 0100",
    "bank_name": "Bank Central Asia (BCA)",
    "account_number": "123-456-7890",
    "account_holder": "PT Awan Nusantara Sejahtera",
    "payment_note": "",
}
BUYER = {
    "company_name": "PT Toko Maju Jaya",
    "tax_id_kind": "npwp",
    "tax_id": "09.876.543.2-109.000",
    "billing_address": "Jl. Gajah Mada No. 8\nSemarang 50134",
}
BUYER_NPWP = "09.876.543.2-109.000"
# 1,110,000 with 12 % PPN on 11/12 of the price, included: 1,000,000 before tax, DPP 916,667, PPN 110,000.
PRICE = Decimal("1110000")
SUBTOTAL, TAX_BASE, TAX = Decimal("1000000"), Decimal("916667"), Decimal("110000")
DESCRIPTION = "Cloud server 4 GB, March"


def set_seller(by: User, **changes) -> None:
    seller.save_profile({**SELLER, **changes}, by=by)


def company_customer(language: str = "en", **changes) -> User:
    customer = factories.make_user(language=language)
    buyer.save_details(customer, {**BUYER, **changes})
    return customer


def taxed_invoice(customer: User, price: Decimal = PRICE) -> Invoice:
    line = invoices.Line(kind="manual", description=DESCRIPTION, unit_price=price)
    return invoices.issue_invoice(customer, [line])


def pdf_text(content: bytes) -> str:
    """The text of a PDF, its spaces squeezed."""
    assert content.startswith(b"%PDF-"), content[:20]
    reader = PdfReader(io.BytesIO(content))
    return re.sub(r"\s+", " ", " ".join(page.extract_text() for page in reader.pages))


def page_text(response) -> str:
    """A page's text without tags, spaces squeezed (labels and values sit in separate elements)."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())))
