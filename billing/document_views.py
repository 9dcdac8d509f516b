"""The invoice page (customers' and staff's), and the documents behind it as downloads: invoices and credit
notes as PDF, customers their own (404 for anyone else's, and for drafts), staff any customer's; the scans
of withholding slips, staff only, through a view (uploads have no public URL)."""

from __future__ import annotations

import os
from decimal import Decimal

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.http import content_disposition_header

from billing import document, pdf, providers, withholding
from billing.document_forms import CreditNoteForm, WithholdingSlipForm
from billing.models import CreditNote, Invoice, LedgerEntry, WithholdingSlip
from panel.roles import staff_required

# What may be downloaded: issued invoices (never drafts), and credit notes.
ISSUED = Invoice.objects.exclude(status=Invoice.Status.DRAFT).select_related("account")
CREDIT_NOTES = CreditNote.objects.select_related("account", "invoice__account")


def invoice_page(request: HttpRequest, invoice: Invoice, *, staff_view: bool, **overrides) -> HttpResponse:
    """The invoice page (billing.document's facts): for its customer, with the ways to pay an open one;
    for staff, with its ledger entries and the forms to record a withholding slip or issue a credit note
    (`overrides`: bound forms with errors)."""
    context = document.invoice_context(invoice)
    current = context["invoice"]
    is_open = current.status == Invoice.Status.OPEN
    context.update(
        staff_view=staff_view,
        currency=current.currency,
        providers=providers.available() if is_open and not staff_view else [],
        pdf_url=reverse("staff-invoice-pdf" if staff_view else "invoice-pdf", args=[current.pk]),
        credit_note_url="staff-credit-note-pdf" if staff_view else "credit-note-pdf",
    )
    if staff_view:
        creditable = current.total - context["credited"]
        context.update(
            entries=LedgerEntry.objects.filter(invoice=current).select_related("created_by"),
            slip_form=WithholdingSlipForm(initial={"amount": _suggested(context)}) if is_open else None,
            creditable=creditable,
            credit_form=(
                CreditNoteForm(creditable=creditable)
                if current.status == Invoice.Status.PAID and creditable > 0
                else None
            ),
        )
    context.update(overrides)
    return render(request, "billing/invoice.html", context)


def _suggested(context: dict) -> Decimal | None:
    """What the slip form offers: PPh 23 on the invoice less what was already withheld, at most what it
    still needs (nothing when that is nothing)."""
    amount = min(
        withholding.suggested_amount(context["invoice"]) - context["withheld"], context["amount_due"]
    )
    return amount if amount > 0 else None


def _attachment(content: bytes, filename: str) -> HttpResponse:
    response = HttpResponse(content, content_type="application/pdf")
    response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=filename)
    return response


def _invoice_pdf_response(invoice: Invoice) -> HttpResponse:
    """The invoice's PDF as a download, in its customer's language."""
    return _attachment(pdf.invoice_pdf(invoice), pdf.filename(invoice))


def _credit_note_pdf_response(note: CreditNote) -> HttpResponse:
    return _attachment(pdf.credit_note_pdf(note), pdf.credit_note_filename(note))


@login_required
def invoice_pdf(request: HttpRequest, pk: int) -> HttpResponse:
    return _invoice_pdf_response(get_object_or_404(ISSUED, pk=pk, account=request.user))


@login_required
def credit_note_pdf(request: HttpRequest, pk: int) -> HttpResponse:
    return _credit_note_pdf_response(get_object_or_404(CREDIT_NOTES, pk=pk, account=request.user))


@staff_required
def staff_invoice_pdf(request: HttpRequest, pk: int) -> HttpResponse:
    return _invoice_pdf_response(get_object_or_404(ISSUED, pk=pk))


@staff_required
def staff_credit_note_pdf(request: HttpRequest, pk: int) -> HttpResponse:
    return _credit_note_pdf_response(get_object_or_404(CREDIT_NOTES, pk=pk))


@staff_required
def staff_withholding_scan(request: HttpRequest, pk: int) -> FileResponse:
    """The scan of a withholding slip, as a download (never shown inline)."""
    slip = get_object_or_404(WithholdingSlip, pk=pk)
    if not slip.file:
        raise Http404
    try:
        handle = slip.file.open("rb")
    except FileNotFoundError:
        raise Http404 from None
    return FileResponse(handle, as_attachment=True, filename=os.path.basename(slip.file.name))
