"""What an invoice or a credit note shows, as the invoice page, its PDF, its mail and the API share it: the
seller and the buyer as the invoice recorded them when issued (falling back to today's seller profile and
the account for invoices issued before invoices recorded them), the lines, the tax breakdown, the tax
withheld and the credit notes, and for an open invoice what is still due and how to pay it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from . import providers, seller
from .invoices import amount_due
from .ledger import with_withheld
from .models import CreditNote, Invoice, SellerProfile
from .money import ZERO

TAX_ID_LABELS = {"npwp": "NPWP", "nik": "NIK"}


@dataclass(frozen=True)
class Party:
    """Who sells or who buys, as an invoice names them."""

    name: str
    address: str = ""
    tax_id_kind: str = ""  # "npwp", "nik" or "" (no tax ID)
    tax_id: str = ""
    email: str = ""
    phone: str = ""
    # Whether there is more to say than a name the panel made up (the seller's "From" block is left out
    # when nobody set the seller's details).
    has_details: bool = True

    @property
    def tax_id_label(self) -> str:
        """ "NPWP" or "NIK" (the names are the same in every language)."""
        return TAX_ID_LABELS.get(self.tax_id_kind, "")

    @property
    def tax_id_display(self) -> str:
        return display_tax_id(self.tax_id)


def display_tax_id(value: str) -> str:
    """A tax ID as people write it: an old 15-digit NPWP as 01.234.567.8-901.000; anything else (a 16-digit
    NPWP or NIK, a seller's NPWP typed with its dots) as it is."""
    if re.fullmatch(r"\d{15}", value or ""):
        return f"{value[:2]}.{value[2:5]}.{value[5:8]}.{value[8]}-{value[9:12]}.{value[12:]}"
    return value or ""


def seller_of(invoice: Invoice, profile: SellerProfile) -> Party:
    """The seller as the invoice recorded it; today's profile for an invoice issued before invoices
    recorded it (its seller name is blank). The contact (email, phone) is always today's."""
    if invoice.seller_name:
        name, address, tax_id = invoice.seller_name, invoice.seller_address, invoice.seller_tax_id
    else:
        name, address, tax_id = seller.seller_name(profile), profile.address, profile.tax_id
    return Party(
        name=name,
        address=address,
        tax_id_kind="npwp" if tax_id else "",
        tax_id=tax_id,
        email=profile.email,
        phone=profile.phone,
        has_details=bool(invoice.seller_name or profile.has_seller_details),
    )


def buyer_of(invoice: Invoice) -> Party:
    """The buyer as the invoice recorded it: a company's name and NPWP, or a person's NIK, and the
    address; the account's name (or email) for an invoice issued without them."""
    account = invoice.account
    name = invoice.buyer_name or account.get_full_name() or account.email
    return Party(
        name=name,
        address=invoice.buyer_address,
        tax_id_kind=invoice.buyer_tax_id_kind if invoice.buyer_tax_id else "",
        tax_id=invoice.buyer_tax_id,
        email=account.email,
    )


def has_tax(invoice: Invoice) -> bool:
    """Whether the invoice was issued with a tax breakdown (invoices from before tax have rate 0)."""
    return invoice.tax_rate > 0


def to_transfer(invoice: Invoice, withheld: Decimal) -> Decimal:
    """What to transfer by bank for the invoice: its total less the tax withheld, plus its unique code
    (`Invoice.transfer_amount` when nothing was withheld)."""
    return invoice.transfer_amount - withheld


def invoice_context(invoice: Invoice) -> dict:
    """Everything the invoice page and the PDF show of an invoice (the page adds its forms and buttons)."""
    current = with_withheld(Invoice.objects.filter(pk=invoice.pk)).select_related("account").get()
    lines = list(current.lines.all())
    profile = seller.profile()
    notes = list(current.credit_notes.all())
    is_open = current.status == Invoice.Status.OPEN
    return {
        "invoice": current,
        "lines": lines,
        "show_periods": any(line.period_start for line in lines),
        "seller": seller_of(current, profile),
        "buyer": buyer_of(current),
        "has_tax": has_tax(current),
        # The lines add up to the total: their prices include the tax (PRICES_INCLUDE_TAX when issued).
        "prices_include_tax": has_tax(current)
        and current.tax > 0
        and sum((line.amount for line in lines), ZERO) == current.total,
        "withheld": current.withheld,
        "amount_due": amount_due(current),
        "unique_code": current.unique_code if is_open else None,
        "to_transfer": to_transfer(current, current.withheld),
        "payment": seller.payment_details(profile),
        "pays_online": is_open and bool(providers.available()),
        "slips": list(current.withholding_slips.all()),
        "credit_notes": notes,
        "credited": sum((note.total for note in notes), ZERO),
    }


def credit_note_context(note: CreditNote) -> dict:
    context = invoice_context(note.invoice)
    context["note"] = note
    return context
