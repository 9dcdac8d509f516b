"""Invoices: numbered per year without gaps, charged to the ledger when issued, paid oldest first from what
the account has (its balance plus the open invoices' own charges), voided by crediting their charge back.

Settling an account that owes nothing past its grace period any more unsuspends it (billing.dunning
suspends it). The customer is mailed each invoice and each payment of one, after the commit, in their own
language (billing.texts); lines and ledger reasons keep their message and values to be shown in each
reader's language.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.mail import get_connection
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import formats, timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop, pgettext, pgettext_lazy

from . import signals
from .errors import BillingError, refuse_own
from .ledger import balance, lock, post, reason_fields
from .models import Invoice, InvoiceLine, InvoiceSequence, LedgerEntry, Subscription
from .money import ZERO, currency, format_money, quantize
from .texts import Message, language_of, mail_in

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser


@dataclass
class Line:
    kind: str
    # Free text, or a Message (a marked message and its values) shown in each reader's language.
    description: str | Message
    unit_price: Decimal
    quantity: Decimal = Decimal(1)
    subscription: Subscription | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None

    @property
    def amount(self) -> Decimal:
        return quantize(self.unit_price * self.quantity)


# Issuing.


def _take_numbers(year: int, count: int = 1) -> list[str]:
    """The next `count` invoice numbers of the year, in one statement. The year's sequence row stays locked
    until the caller's transaction ends, so numbers never repeat or skip; callers take them last."""
    table = InvoiceSequence._meta.db_table
    with connection.cursor() as cursor:
        for _attempt in range(2):
            cursor.execute(
                f"UPDATE {table} SET last = last + %s WHERE year = %s RETURNING last",  # noqa: S608
                [count, year],
            )
            row = cursor.fetchone()
            if row is not None:
                break
            InvoiceSequence.objects.get_or_create(year=year)  # the year's first invoice
        else:  # pragma: no cover (the row exists after get_or_create)
            raise RuntimeError(f"no invoice sequence for {year}")
    last = row[0]
    return [f"INV-{year}-{n:06d}" for n in range(last - count + 1, last + 1)]


def _new_invoice(account, lines: list[Line], number: str, at: datetime) -> Invoice:
    """An open invoice (not saved) for these lines."""
    return Invoice(
        account=account,
        number=number,
        currency=currency(),
        status=Invoice.Status.OPEN,
        total=quantize(sum((line.amount for line in lines), ZERO)),
        issued_at=at,
        due_at=at + timedelta(days=settings.INVOICE_DUE_DAYS),
    )


def _invoice_lines(invoice: Invoice, lines: list[Line]) -> list[InvoiceLine]:
    return [
        InvoiceLine(
            invoice=invoice,
            kind=line.kind,
            description=_english(line.description)[:255],
            description_data=line.description.data() if isinstance(line.description, Message) else {},
            subscription=line.subscription,
            period_start=line.period_start,
            period_end=line.period_end,
            quantity=line.quantity,
            unit_price=line.unit_price,
            amount=line.amount,
        )
        for line in lines
    ]


def _english(text: str | Message) -> str:
    return text.english() if isinstance(text, Message) else text


def _charge(invoice: Invoice) -> LedgerEntry:
    """The ledger entry (not saved) that charges an issued invoice to its account."""
    return LedgerEntry(
        created_at=invoice.issued_at,
        account=invoice.account,
        kind=LedgerEntry.Kind.CHARGE,
        amount=-invoice.total,
        currency=invoice.currency,
        **reason_fields(Message(gettext_noop("Invoice %(number)s"), {"number": invoice.number})),
        invoice=invoice,
    )


def issue(account: AbstractBaseUser, lines_of: list[list[Line]], at: datetime) -> list[Invoice]:
    """Issue one invoice per list of lines: numbered together (the year's sequence row is taken here and
    stays locked to the commit, so callers issue last), written in bulk with their lines and their charges
    on the ledger, mailed after the commit. The caller holds the account's row lock and settles."""
    numbers = _take_numbers(timezone.localtime(at).year, len(lines_of))
    invoices = [
        _new_invoice(account, lines, number, at) for lines, number in zip(lines_of, numbers, strict=True)
    ]
    Invoice.objects.bulk_create(invoices)
    InvoiceLine.objects.bulk_create(
        [
            line
            for invoice, lines in zip(invoices, lines_of, strict=True)
            for line in _invoice_lines(invoice, lines)
        ]
    )
    LedgerEntry.objects.bulk_create([_charge(invoice) for invoice in invoices])
    language = language_of(account)
    with translation.override(language):
        messages = [
            (_("Invoice %(number)s") % {"number": invoice.number}, invoice_text(invoice))
            for invoice in invoices
        ]
    transaction.on_commit(lambda: mail(account, messages, language))
    return invoices


def issue_invoice(account: AbstractBaseUser, lines: list[Line], at: datetime | None = None) -> Invoice:
    """Issue an invoice now: numbered, charged to the ledger, paid at once if credit covers it."""
    at = at or timezone.now()
    with transaction.atomic(savepoint=False):
        lock(account)
        (invoice,) = issue(account, [lines], at)
        if invoice in settle(account, at, locked=True, issued_only=True):
            invoice.status, invoice.paid_at = Invoice.Status.PAID, at
    return invoice


# Settling.


def settle(
    account: AbstractBaseUser, at: datetime | None = None, *, locked: bool = False, issued_only: bool = False
) -> list[Invoice]:
    """Pay open invoices oldest first from what the account has; unsuspend a settled account.
    `locked`: the caller holds the account's row lock already. `issued_only`: the caller only issued
    invoices since the account was last settled, so unless one is paid now nothing can have become
    un-overdue and the unsuspension check is skipped."""
    at = at or timezone.now()
    paid = []
    with transaction.atomic(savepoint=False):
        if not locked:
            lock(account)
        open_invoices = list(
            Invoice.objects.filter(account=account, status=Invoice.Status.OPEN).order_by("issued_at", "id")
        )
        available = balance(account) + sum((i.total for i in open_invoices), ZERO) if open_invoices else ZERO
        for invoice in open_invoices:
            if available < invoice.total:
                break
            available -= invoice.total
            paid.append(invoice)
        if paid:
            Invoice.objects.filter(pk__in=[i.pk for i in paid], status=Invoice.Status.OPEN).update(
                status=Invoice.Status.PAID, paid_at=at
            )
            language = language_of(account)
            with translation.override(language):
                thanks = _("Thank you: we received your payment.")
                messages = [(_("Invoice %(number)s is paid") % {"number": i.number}, thanks) for i in paid]
            transaction.on_commit(lambda: mail(account, messages, language))
        if (paid or not issued_only) and not overdue(account, at).exists():
            _unsuspend(account, at)
    return paid


def overdue(account: AbstractBaseUser, at: datetime) -> QuerySet[Invoice]:
    """The account's open invoices past their grace period as of `at` (its servers are suspended)."""
    return Invoice.objects.filter(
        account=account,
        status=Invoice.Status.OPEN,
        due_at__lte=at - timedelta(days=settings.BILLING_GRACE_DAYS),
    )


def _unsuspend(account, at=None) -> None:
    references = list(
        Subscription.objects.filter(account=account, status=Subscription.Status.SUSPENDED).values_list(
            "reference", flat=True
        )
    )
    if not references:
        return
    Subscription.objects.filter(account=account, status=Subscription.Status.SUSPENDED).update(
        status=Subscription.Status.ACTIVE, suspended_at=None, resumed_at=at or timezone.now()
    )
    transaction.on_commit(
        lambda: signals.account_unsuspended.send(sender=None, account=account, references=references)
    )


# Voiding.


def void_invoice(invoice: Invoice, by: AbstractBaseUser | None = None, reason: str | Message = "") -> Invoice:
    """Cancel an open invoice: its charge is credited back."""
    refuse_own(invoice.account, by)
    with transaction.atomic():
        lock(invoice.account)
        if not void_locked(invoice, by, reason):
            raise BillingError(pgettext("invoice action", "Only open invoices can be voided."))
        settle(invoice.account)
        signals.invoice_voided.send(sender=None, account=invoice.account, invoice=invoice, by=by)
    invoice.refresh_from_db()
    return invoice


def void_locked(invoice: Invoice, by: AbstractBaseUser | None = None, reason: str | Message = "") -> bool:
    """Void an open invoice and credit its charge (the caller holds the account's lock); False when it was
    not open (voided or paid meanwhile)."""
    if not Invoice.objects.filter(pk=invoice.pk, status=Invoice.Status.OPEN).update(
        status=Invoice.Status.VOID, voided_at=timezone.now()
    ):
        return False
    post(
        invoice.account,
        LedgerEntry.Kind.CREDIT,
        invoice.total,
        reason
        or Message(pgettext_lazy("invoice status", "Invoice %(number)s voided"), {"number": invoice.number}),
        by=by,
        invoice=invoice,
    )
    return True


# Mails.


def mail(account, messages: list[tuple[str, str]], language: str) -> None:
    """Mails to one customer over one connection: (subject, body) pairs rendered in `language` (the
    account's, billing.texts.language_of), which their Content-Language header names."""
    mails = [mail_in(language, subject, body, [account.email]) for subject, body in messages]
    get_connection(fail_silently=True).send_messages(mails)


def invoice_text(invoice: Invoice) -> str:
    """The body of a mail about an invoice, in the active language: its number, total and due date."""
    return _("Invoice %(number)s for %(total)s is due on %(due)s.") % {
        "number": invoice.number,
        "total": format_money(invoice.total, invoice.currency),
        "due": formats.date_format(timezone.localtime(invoice.due_at), "DATE_FORMAT"),
    }
