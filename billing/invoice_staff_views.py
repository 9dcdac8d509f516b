"""What staff do on an invoice's page besides voiding it: record a withholding slip (PPh 23) against an open
invoice, and issue a credit note for (part of) a paid one. POST only; a refusal is a form error on the
invoice page and changes nothing; success goes back to the page with a notice. The audit log hears of both
from billing's signals (withholding_recorded, credit_note_issued)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from billing import credit_notes, errors, withholding
from billing.document_forms import CreditNoteForm, WithholdingSlipForm
from billing.document_views import ISSUED, invoice_page
from billing.models import Invoice
from billing.money import format_money
from panel.roles import staff_required


def _back(invoice: Invoice, anchor: str) -> HttpResponse:
    return redirect(reverse("staff-invoice", args=[invoice.pk]) + anchor)


@staff_required
@require_POST
def staff_record_withholding(request: HttpRequest, pk: int) -> HttpResponse:
    invoice = get_object_or_404(ISSUED, pk=pk)
    form = WithholdingSlipForm(request.POST, request.FILES)
    if form.is_valid():
        data = form.cleaned_data
        try:
            slip = withholding.record_slip(
                invoice, data["number"], data["amount"], data["scan"], by=request.user
            )
        except errors.BillingError as exc:
            form.add_error(None, exc.message)
        else:
            invoice.refresh_from_db(fields=["status"])
            values = {
                "number": slip.number,
                "amount": format_money(slip.amount, invoice.currency),
                "invoice": invoice.number,
            }
            if invoice.status == Invoice.Status.PAID:
                text = _("Withholding slip %(number)s of %(amount)s recorded; invoice %(invoice)s is paid.")
            else:
                text = _("Withholding slip %(number)s of %(amount)s recorded.")
            messages.success(request, text % values)
            return _back(invoice, "#withholding")
    return invoice_page(request, invoice, staff_view=True, slip_form=form)


@staff_required
@require_POST
def staff_issue_credit_note(request: HttpRequest, pk: int) -> HttpResponse:
    invoice = get_object_or_404(ISSUED, pk=pk)
    form = CreditNoteForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            note = credit_notes.credit_paid_invoice(invoice, data["amount"], data["reason"], by=request.user)
        except errors.BillingError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(
                request,
                _("Credit note %(number)s of %(amount)s issued and credited to the customer's balance.")
                % {"number": note.number, "amount": format_money(note.total, note.currency)},
            )
            return _back(invoice, "#credit-notes")
    return invoice_page(request, invoice, staff_view=True, credit_form=form)
