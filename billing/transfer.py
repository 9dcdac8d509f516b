"""Bank transfer without a gateway: each invoice can carry a unique code, a number from 1 to 999 added to
its amount, so that the amount to transfer is unique among open invoices and staff matching a bank
statement find the invoice by the amount alone (an admin setting on the billing settings page). The code's
digits become credit on the account when the transfer is recorded."""

from __future__ import annotations

import secrets
from decimal import Decimal

from django.db.models import F, Q, QuerySet

from .models import Invoice

CODES = range(1, 1000)


def assign_codes(invoices: list[Invoice]) -> None:
    """Give each new (unsaved) invoice a code that makes its amount to transfer unique among open invoices
    and among these. The caller holds the invoice sequence's lock, so no other issuer picks meanwhile."""
    taken = set(
        Invoice.objects.filter(status=Invoice.Status.OPEN, unique_code__isnull=False)
        .annotate(amount=F("total") + F("unique_code"))
        .filter(amount__gt=min(i.total for i in invoices), amount__lt=max(i.total for i in invoices) + 1000)
        .values_list("amount", flat=True)
    )
    for invoice in invoices:
        free = [code for code in CODES if invoice.total + code not in taken]
        if not free:
            continue  # a thousand open invoices of this very amount: this one goes without a code
        invoice.unique_code = free[secrets.randbelow(len(free))]
        taken.add(invoice.total + invoice.unique_code)


def find_by_amount(amount: Decimal) -> QuerySet[Invoice]:
    """Open invoices whose amount to transfer is `amount` (with its code), or whose total is (a transfer
    without the code): what staff look for when a bank statement shows a payment."""
    return (
        Invoice.objects.filter(status=Invoice.Status.OPEN)
        .annotate(transfer=F("total") + F("unique_code"))
        .filter(Q(transfer=amount) | Q(total=amount))
        .select_related("account")
        .order_by("issued_at")
    )
