"""Invoices and credit notes as PDF (WeasyPrint), in the customer's language: the same facts as the invoice
page (the seller and buyer with their tax IDs, the lines, subtotal, tax base, tax and total, the tax
withheld and what is still due, how to pay an open one), laid out for A4 paper. Rendered where it is asked
for: the invoice page's download, the API's `invoices/{id}/pdf/`, and the worker that mails a new invoice
(billing.invoice_mail).

The templates bring their own styles and fonts (DejaVu Sans, installed with WeasyPrint's system packages);
nothing is fetched while rendering but `data:` URLs, whatever text an invoice carries."""

from __future__ import annotations

from django.template.loader import render_to_string
from django.utils import translation
from weasyprint import HTML
from weasyprint.urls import URLFetcher

from . import document
from .models import CreditNote, Invoice
from .texts import language_of


def filename(invoice: Invoice) -> str:
    return f"{invoice.number}.pdf"


def credit_note_filename(note: CreditNote) -> str:
    return f"{note.number}.pdf"


def _pdf(html: str) -> bytes:
    return HTML(string=html, url_fetcher=URLFetcher(allowed_protocols={"data"})).write_pdf()


def invoice_pdf(invoice: Invoice, language: str | None = None) -> bytes:
    """The invoice as PDF bytes, in `language` (the customer's by default)."""
    with translation.override(language or language_of(invoice.account)):
        html = render_to_string("billing/pdf/invoice.html", document.invoice_context(invoice))
    return _pdf(html)


def credit_note_pdf(note: CreditNote, language: str | None = None) -> bytes:
    """The credit note as PDF bytes, in `language` (the customer's by default)."""
    with translation.override(language or language_of(note.account)):
        html = render_to_string("billing/pdf/credit_note.html", document.credit_note_context(note))
    return _pdf(html)
