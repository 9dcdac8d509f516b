"""Bank transfer without a gateway: each invoice can carry a unique code, a number from 1 to 999 added to
its amount, so that the amount to transfer is unique among open invoices and staff matching a bank
statement find the invoice by the amount alone (an admin setting on the billing settings page). The code's
digits become credit on the account when the transfer is recorded."""

from __future__ import annotations

import secrets
from decimal import Decimal

from django.db.models import F, Q, QuerySet

from .ledger import with_withheld
from .models import Invoice

CODES = range(1, 1000)


def assign_codes(invoices: list[Invoice]) -> None:
    """Give each new invoice (written in this transaction, without a code yet) a code that makes its
    amount to transfer unique among open invoices and among these, and different from any open invoice's
    own total (what a transfer without the code would be, which `find_by_amount` also matches). The caller
    holds the invoice sequence's lock (billing.invoice_numbers), so no other issuer picks meanwhile; it
    writes the codes."""
    if not invoices:
        return
    low, high = min(i.total for i in invoices), max(i.total for i in invoices) + CODES.stop
    open_invoices = Invoice.objects.filter(status=Invoice.Status.OPEN)
    taken = set(
        open_invoices.filter(unique_code__isnull=False)
        .annotate(amount=F("total") + F("unique_code"))
        .filter(amount__gt=low, amount__lt=high)
        .values_list("amount", flat=True)
    )
    taken.update(open_invoices.filter(total__gt=low, total__lt=high).values_list("total", flat=True))
    taken.update(invoice.total for invoice in invoices)
    for invoice in invoices:
        free = [code for code in CODES if invoice.total + code not in taken]
        if not free:
            continue  # a thousand open invoices of this very amount: this one goes without a code
        invoice.unique_code = free[secrets.randbelow(len(free))]
        taken.add(invoice.total + invoice.unique_code)


def find_by_amount(amount: Decimal) -> QuerySet[Invoice]:
    """Open invoices whose amount to transfer is `amount` (what they still need, with their code), or whose
    total or amount still needed is (a transfer without the code): what staff look for when a bank statement
    shows a payment. What still needs paying is the total less the tax withheld from it (PPh 23)."""
    return (
        with_withheld(Invoice.objects.filter(status=Invoice.Status.OPEN))
        .annotate(due=F("total") - F("withheld"))
        .annotate(transfer=F("due") + F("unique_code"))
        .filter(Q(transfer=amount) | Q(due=amount) | Q(total=amount))
        .select_related("account")
        .order_by("issued_at")
    )
