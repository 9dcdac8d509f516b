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
from django.contrib.auth import get_user_model
from django.core.mail import get_connection
from django.db import connection, transaction
from django.db.models import QuerySet, Sum
from django.utils import formats, timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop, pgettext, pgettext_lazy

from . import credit_notes, numbering, queue, signals, tax, transfer
from .errors import BillingError, refuse_own
from .ledger import balance, lock, post, reason_fields, with_withheld
from .models import (
    BillingProfile,
    Invoice,
    InvoiceLine,
    InvoiceSequence,
    LedgerEntry,
    SellerProfile,
    Subscription,
)
from .money import ZERO, currency, format_money, quantize
from .texts import Message, language_of, mail_in

MAIL_INVOICES = "billing.tasks.mail_invoices"

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
    """The next `count` invoice numbers of the year (billing.numbering): the year's sequence row stays
    locked until the caller's transaction ends, so numbers never repeat or skip; callers take them last."""
    return numbering.take(InvoiceSequence, "INV", year, count)


@dataclass(frozen=True)
class Parties:
    """What an invoice records of who sold and who bought, as they are when it is issued."""

    seller_name: str
    seller_address: str
    seller_tax_id: str
    unique_amount_codes: bool
    buyer_name: str
    buyer_address: str
    buyer_tax_id_kind: str
    buyer_tax_id: str
    rule: tax.TaxRule


_PARTIES = """
SELECT u.first_name, u.last_name, u.email, b.company_name AS company, b.billing_address AS address,
       b.tax_id_kind AS kind, b.tax_id, s.legal_name AS s_name, s.address AS s_address, s.tax_id AS s_tax_id,
       s.unique_amount_codes AS s_codes
FROM {users} u
LEFT JOIN {buyers} b ON b.account_id = u.id
LEFT JOIN {sellers} s ON s.id = %s
WHERE u.id = %s
"""


def _parties(account) -> Parties:
    """The seller's profile and the account's billing details (billing.buyer), in one statement (issued
    for every account of a billing run)."""
    sql = _PARTIES.format(
        users=get_user_model()._meta.db_table,
        buyers=BillingProfile._meta.db_table,
        sellers=SellerProfile._meta.db_table,
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [SellerProfile.SINGLETON_PK, account.pk])
        names = [column[0] for column in cursor.description]
        row = dict(zip(names, cursor.fetchone(), strict=True))
    full_name = f"{row['first_name']} {row['last_name']}".strip()
    return Parties(
        seller_name=row["s_name"] or getattr(settings, "BILLING_COMPANY_NAME", ""),
        seller_address=row["s_address"] or "",
        seller_tax_id=row["s_tax_id"] or "",
        unique_amount_codes=bool(row["s_codes"]),
        buyer_name=row["company"] or full_name or row["email"],
        buyer_address=row["address"] or "",
        buyer_tax_id_kind=(row["kind"] or "") if row["tax_id"] else "",
        buyer_tax_id=row["tax_id"] or "",
        rule=tax.current_rule(),
    )


def _new_invoice(account, lines: list[Line], number: str, at: datetime, parties: Parties) -> Invoice:
    """An open invoice (not saved) for these lines, its tax computed once on their sum (billing.tax)."""
    amounts = tax.compute(sum((line.amount for line in lines), ZERO), parties.rule)
    return Invoice(
        account=account,
        number=number,
        currency=currency(),
        status=Invoice.Status.OPEN,
        subtotal=amounts.subtotal,
        tax_base=amounts.tax_base,
        tax=amounts.tax,
        tax_rate=parties.rule.rate if parties.rule.charges_tax else ZERO,
        tax_base_fraction=parties.rule.fraction_text,
        total=amounts.total,
        seller_name=parties.seller_name,
        seller_address=parties.seller_address,
        seller_tax_id=parties.seller_tax_id,
        buyer_name=parties.buyer_name,
        buyer_address=parties.buyer_address,
        buyer_tax_id_kind=parties.buyer_tax_id_kind,
        buyer_tax_id=parties.buyer_tax_id,
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
    on the ledger, mailed after the commit. The caller holds the account's row lock and settles.

    Everything that does not need the numbers (the parties, the invoices' amounts, their lines) is made
    before they are taken: the sequence row serialises every issuer until its commit, so the less done
    under it, the more accounts renew side by side."""
    parties = _parties(account)
    invoices = [_new_invoice(account, lines, "", at, parties) for lines in lines_of]
    invoice_lines = [
        line
        for invoice, lines in zip(invoices, lines_of, strict=True)
        for line in _invoice_lines(invoice, lines)
    ]
    numbers = _take_numbers(timezone.localtime(at).year, len(lines_of))
    for invoice, number in zip(invoices, numbers, strict=True):
        invoice.number = number
    if parties.unique_amount_codes:
        # Under the year's sequence lock, so two issuers never pick the same amount.
        transfer.assign_codes(invoices)
    Invoice.objects.bulk_create(invoices)
    InvoiceLine.objects.bulk_create(invoice_lines)
    LedgerEntry.objects.bulk_create([_charge(invoice) for invoice in invoices])
    # The invoices are mailed by a worker, with their PDFs attached (billing.tasks.mail_invoices): rendering
    # PDFs never holds up an order or a billing run. One task for the lot (a renewal issues an account's
    # invoices together): it mails them one by one, and a retry sends again only those not sent yet.
    queue.after_commit(MAIL_INVOICES, [invoice.pk for invoice in invoices])
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
            with_withheld(Invoice.objects.filter(account=account, status=Invoice.Status.OPEN)).order_by(
                "issued_at", "id"
            )
        )
        # What the account has to pay with: its balance without the open invoices' charges and without
        # the tax withheld from them (which settles its own invoice, not another).
        available = (
            balance(account) + sum((i.total - i.withheld for i in open_invoices), ZERO)
            if open_invoices
            else ZERO
        )
        for invoice in open_invoices:
            need = invoice.total - invoice.withheld
            if available < need:
                break
            available -= need
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


def amount_due(invoice: Invoice) -> Decimal:
    """What an open invoice still needs: its total less the tax withheld from it (0 when not open)."""
    if invoice.status != Invoice.Status.OPEN:
        return ZERO
    withheld = getattr(invoice, "withheld", None)
    if withheld is None:
        withheld = (
            LedgerEntry.objects.filter(invoice=invoice, kind=LedgerEntry.Kind.WITHHOLDING).aggregate(
                total=Sum("amount")
            )["total"]
            or ZERO
        )
    return invoice.total - withheld


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
    reason = reason or Message(
        pgettext_lazy("invoice status", "Invoice %(number)s voided"), {"number": invoice.number}
    )
    post(invoice.account, LedgerEntry.Kind.CREDIT, invoice.total, reason, by=by, invoice=invoice)
    credit_notes.issue_for(invoice, invoice.total, reason, by=by)
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
