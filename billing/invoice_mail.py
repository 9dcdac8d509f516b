"""The mail that carries a new invoice to its customer: in the customer's language, with the invoice's
PDF attached (billing.pdf). Sent by a worker (billing.tasks.mail_invoices), never inside the transaction
or the billing run that issued the invoice. An invoice voided before its mail went out (an order that
failed at once) is not mailed; one paid at once from credit is mailed as paid.

Beat's sweep (`hand_on_due`, every INVOICE_MAIL_SWEEP_SECONDS) hands on the invoices whose `mail_after` has
come: a new server's first invoice, which its order leaves to the sweep (one broker message less in the
request), and any invoice whose task was lost between its issuer's commit and the broker (its issuer sent
it at once, `mail_after` a day on). The sweep moves `mail_after` a day on as it hands an invoice on. The task
mails only invoices without `mailed_at` and sets it, clearing `mail_after`: a task run again after one that
finished (handed on again, redelivered, or left in the queue from before an upgrade) mails nothing. Two
tasks for one invoice at the same moment would both mail it: that takes a mail queue more than a day behind,
or a worker lost between the mail and its record (redelivered: at-least-once, as any such delivery)."""

from __future__ import annotations

from datetime import datetime

from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import Case, Value, When
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from . import pdf, queue
from .invoices import MAIL_CHUNK, MAIL_HANDED_ON_AGAIN_AFTER, MAIL_INVOICES, invoice_text
from .models import Invoice
from .money import format_money
from .texts import language_of, mail_in

MAIL_SWEEP_LIMIT = 5000  # invoices handed on by one sweep at most (100 tasks); the next sweep takes the rest


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
    """Mail each of these invoices not mailed yet to its account and record it (`mailed_at`; those voided
    meanwhile are not mailed, and no longer due); returns how many were sent. A failure to send raises and
    records nothing."""
    pending = Invoice.objects.filter(pk__in=invoice_ids, mailed_at__isnull=True)
    mailed = list(
        pending.filter(status__in=[Invoice.Status.OPEN, Invoice.Status.PAID])
        .select_related("account")
        .order_by("pk")
    )
    if mailed:
        get_connection().send_messages([message_for(invoice) for invoice in mailed])
    sent = [invoice.pk for invoice in mailed]
    pending.update(
        mail_after=None, mailed_at=Case(When(pk__in=sent, then=Value(timezone.now())), default=None)
    )
    return len(mailed)


def give_up(invoice_ids: list[int]) -> None:
    """No more tries for these invoices' mails (their task ran out of retries): the sweep leaves them."""
    Invoice.objects.filter(pk__in=invoice_ids, mailed_at__isnull=True).update(mail_after=None)


def hand_on_due(now: datetime | None = None, limit: int = MAIL_SWEEP_LIMIT) -> int:
    """Send the mail task for the invoices whose mail is due (oldest first, at most `limit`), after moving
    their `mail_after` a day on in the same transaction, so that the next sweep does not send them again;
    returns how many. Rows another transaction holds are left to the next sweep, never waited for, and the
    rows it locks keep their keys free (a payment's or a void's ledger entry may reference them meanwhile).
    A failure to send one task is logged and the others are sent: its invoices are handed on a day later."""
    now = now or timezone.now()
    with transaction.atomic():
        due = Invoice.objects.filter(mail_after__lte=now).order_by("mail_after", "pk")
        ids = list(due.select_for_update(no_key=True, skip_locked=True).values_list("pk", flat=True)[:limit])
        Invoice.objects.filter(pk__in=ids).update(mail_after=now + MAIL_HANDED_ON_AGAIN_AFTER)
        for start in range(0, len(ids), MAIL_CHUNK):
            queue.after_commit(MAIL_INVOICES, ids[start : start + MAIL_CHUNK], robust=True)
    return len(ids)
