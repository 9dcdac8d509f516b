"""The mail that carries a new invoice to its customer: in the customer's language, with the invoice's
PDF attached (billing.pdf). Sent by a worker (billing.tasks.mail_invoices), never inside the transaction
or the billing run that issued the invoice. An invoice voided before its mail went out (an order that
failed at once) is not mailed; one paid at once from credit is mailed as paid."""

from __future__ import annotations

from django.core.mail import EmailMessage, get_connection
from django.utils import translation
from django.utils.translation import gettext as _

from . import pdf
from .invoices import invoice_text
from .models import Invoice
from .money import format_money
from .texts import language_of, mail_in


def _body(invoice: Invoice) -> str:
    """What the mail says, in the active language."""
    if invoice.status == Invoice.Status.PAID:
        text = _("Invoice %(number)s for %(total)s is paid from the credit on your account. Thank you.") % {
            "number": invoice.number,
            "total": format_money(invoice.total, invoice.currency),
        }
    else:
        text = invoice_text(invoice)
    return f"{text}\n\n{_('The invoice is attached as a PDF.')}"


def message_for(invoice: Invoice) -> EmailMessage:
    """The mail of one invoice, in its customer's language, its PDF attached."""
    language = language_of(invoice.account)
    with translation.override(language):
        subject = _("Invoice %(number)s") % {"number": invoice.number}
        message = mail_in(language, subject, _body(invoice), [invoice.account.email])
    message.attach(pdf.filename(invoice), pdf.invoice_pdf(invoice, language), "application/pdf")
    return message


def send(invoice_ids: list[int]) -> int:
    """Mail each of these invoices to its account; returns how many were sent."""
    mailed = (
        Invoice.objects.filter(pk__in=invoice_ids, status__in=[Invoice.Status.OPEN, Invoice.Status.PAID])
        .select_related("account")
        .order_by("pk")
    )
    messages = [message_for(invoice) for invoice in mailed]
    if messages:
        get_connection().send_messages(messages)
    return len(messages)
