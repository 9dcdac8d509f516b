"""The mail that carries a new invoice to its customer: in the customer's language, with the invoice's
PDF attached (billing.pdf). Sent by a worker (billing.tasks.mail_invoices), never inside the transaction
or the billing run that issued the invoice."""

from __future__ import annotations

from django.core.mail import get_connection
from django.utils import translation
from django.utils.translation import gettext as _

from . import pdf
from .invoices import invoice_text
from .models import Invoice
from .texts import language_of, mail_in


def send(invoice_ids: list[int]) -> int:
    """Mail each of these invoices to its account; returns how many were sent."""
    messages = []
    for invoice in Invoice.objects.filter(pk__in=invoice_ids).select_related("account").order_by("pk"):
        language = language_of(invoice.account)
        with translation.override(language):
            subject = _("Invoice %(number)s") % {"number": invoice.number}
            message = mail_in(language, subject, invoice_text(invoice), [invoice.account.email])
            message.attach(pdf.filename(invoice), pdf.invoice_pdf(invoice), "application/pdf")
        messages.append(message)
    if messages:
        get_connection().send_messages(messages)
    return len(messages)
