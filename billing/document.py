"""What an invoice or a credit note shows, as the invoice page, its PDF and its mail share it: the seller and
the buyer as the invoice recorded them when issued (falling back to today's seller profile for invoices
issued before invoices recorded it), the lines, the tax breakdown, and for an open invoice what is still
due and how to pay it."""

from __future__ import annotations

from . import credit_notes, seller
from .invoices import amount_due, with_withheld
from .models import CreditNote, Invoice


def invoice_context(invoice: Invoice) -> dict:
    lines = list(invoice.lines.all())
    profile = seller.profile()
    current = with_withheld(Invoice.objects.filter(pk=invoice.pk)).select_related("account").get()
    return {
        "invoice": current,
        "lines": lines,
        "show_periods": any(line.period_start for line in lines),
        "seller": profile,
        "seller_name": current.seller_name or seller.seller_name(profile),
        "seller_address": current.seller_address if current.seller_name else profile.address,
        "seller_tax_id": current.seller_tax_id if current.seller_name else profile.tax_id,
        "buyer_name": current.buyer_name or current.account.get_full_name() or current.account.email,
        "payment": seller.payment_details(profile),
        "withheld": current.withheld,
        "amount_due": amount_due(current),
        "slips": list(current.withholding_slips.all()),
        "credit_notes": list(current.credit_notes.all()),
        "credited": credit_notes.credited(current),
    }


def credit_note_context(note: CreditNote) -> dict:
    context = invoice_context(note.invoice)
    context["note"] = note
    return context
