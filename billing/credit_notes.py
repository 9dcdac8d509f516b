"""Credit notes: a numbered document (CN-2026-000001) that cancels an issued invoice or part of it, with the
invoice's tax in proportion. Billing issues one when an invoice is voided (its whole amount); staff issue
one for part or all of a paid invoice (a refund of a service not delivered), which credits the account."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from . import numbering, signals, tax
from .errors import BillingError, refuse_own
from .ledger import lock, post, reason_fields
from .models import CreditNote, CreditNoteSequence, Invoice, LedgerEntry
from .money import ZERO, format_money, quantize
from .texts import Message

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser


# A note for the same amount and reason of the same invoice within this time is the same form sent twice.
RESUBMIT_WINDOW = timedelta(minutes=2)


def credited(invoice: Invoice) -> Decimal:
    """What credit notes have cancelled of the invoice so far."""
    return CreditNote.objects.filter(invoice=invoice).aggregate(total=Sum("total"))["total"] or ZERO


def issue_for(
    invoice: Invoice, amount: Decimal, reason: str | Message, by: AbstractBaseUser | None = None
) -> CreditNote:
    """A credit note for `amount` of the invoice (the caller holds the account's lock and posts the
    ledger's credit)."""
    at = timezone.now()
    (number,) = numbering.take(CreditNoteSequence, "CN", timezone.localtime(at).year)
    whole = tax.Breakdown(invoice.subtotal, invoice.tax_base, invoice.tax, invoice.total)
    part = tax.proportion(amount, invoice.total, whole)
    return CreditNote.objects.create(
        account_id=invoice.account_id,
        invoice=invoice,
        number=number,
        currency=invoice.currency,
        subtotal=part.subtotal,
        tax_base=part.tax_base,
        tax=part.tax,
        total=part.total,
        **reason_fields(reason),
        issued_at=at,
        created_by=by,
    )


def credit_paid_invoice(
    invoice: Invoice, amount: Decimal, reason: str, by: AbstractBaseUser | None
) -> CreditNote:
    """Staff cancel `amount` of a paid invoice (a service not delivered): a credit note, and the amount
    credited to the account's balance (paid out by a refund staff record separately, or used for the
    next invoices). At most what the invoice has not been credited yet."""
    refuse_own(invoice.account, by)
    amount = quantize(Decimal(amount))
    if amount <= 0:
        raise BillingError(_("A credit note must be for more than zero."))
    if not reason.strip():
        raise BillingError(_("A credit note needs a reason."))
    with transaction.atomic():
        lock(invoice.account)
        invoice = Invoice.objects.get(pk=invoice.pk)
        if invoice.status != Invoice.Status.PAID:
            raise BillingError(_("Credit notes are issued for paid invoices; void an open one instead."))
        left = invoice.total - credited(invoice)
        if amount > left:
            raise BillingError(
                _("At most %(amount)s of this invoice can still be credited.")
                % {"amount": format_money(left, invoice.currency)}
            )
        message = Message(
            gettext_noop("Credit note for invoice %(number)s: %(reason)s"),
            {"number": invoice.number, "reason": reason.strip()},
        )
        # The same form sent twice (a double click, a resent POST) is the note it made the first time.
        same = CreditNote.objects.filter(
            invoice=invoice, total=amount, reason=reason_fields(message)["reason"],
            issued_at__gte=timezone.now() - RESUBMIT_WINDOW,
        ).first()  # fmt: skip
        if same is not None:
            return same
        post(invoice.account, LedgerEntry.Kind.CREDIT, amount, message, by=by, invoice=invoice)
        note = issue_for(invoice, amount, message, by=by)  # its number last
        signals.credit_note_issued.send(sender=None, account=invoice.account, note=note, by=by)
    return note
