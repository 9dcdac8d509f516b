"""Invoices: numbered per year without gaps, charged to the ledger when issued, paid oldest first from what
the account has (its balance plus the open invoices' own charges), voided by crediting their charge back.

Settling an account that owes nothing past its grace period any more unsuspends it (billing.dunning
suspends it). The customer is mailed each invoice and each payment of one, after the commit, in their own
language (billing.texts); lines and ledger reasons keep their message and values to be shown in each
reader's language.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.mail import get_connection
from django.db import connection, transaction
from django.db.models import QuerySet, Sum
from django.db.models.functions import Lower
from django.utils import formats, timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import pgettext, pgettext_lazy

import prepared_statements

from . import credit_notes, queue, rows, signals, tax
from .errors import BillingError, refuse_own
from .invoice_numbers import Numbers, charge_reason
from .ledger import lock, post, reason_fields
from .models import (
    Invoice,
    InvoiceLine,
    LedgerEntry,
    Subscription,
)
from .money import ZERO, currency, format_money, quantize
from .parties import Parties, locked_parties_of
from .texts import ENGLISH, Message, language_of, mail_in

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


class _Amounts(dict):
    """The tax breakdowns of the subtotals met so far (billing.tax.compute), for invoices issued together
    under one rule: a billing run's invoices come to a few amounts."""

    def __init__(self, rule: tax.TaxRule) -> None:
        super().__init__()
        self.rule = rule

    def __missing__(self, subtotal: Decimal) -> tax.Breakdown:
        self[subtotal] = amounts = tax.compute(subtotal, self.rule)
        return amounts


def _new_invoice(
    account, lines: list[Line], at: datetime, parties: Parties, amounts: _Amounts, mail_after: datetime
) -> Invoice:
    """An open invoice (not saved, no number yet) for these lines, its tax computed once on their sum
    (billing.tax), its mail due from `mail_after`."""
    breakdown = amounts[sum((line.amount for line in lines), ZERO)]
    return Invoice(
        account=account,
        currency=currency(),
        status=Invoice.Status.OPEN,
        subtotal=breakdown.subtotal,
        tax_base=breakdown.tax_base,
        tax=breakdown.tax,
        tax_rate=parties.rule.rate if parties.rule.charges_tax else ZERO,
        tax_base_fraction=parties.rule.fraction_text,
        total=breakdown.total,
        seller_name=parties.seller_name,
        seller_address=parties.seller_address,
        seller_tax_id=parties.seller_tax_id,
        buyer_name=parties.buyer_name,
        buyer_address=parties.buyer_address,
        buyer_tax_id_kind=parties.buyer_tax_id_kind,
        buyer_tax_id=parties.buyer_tax_id,
        issued_at=at,
        due_at=at + timedelta(days=settings.INVOICE_DUE_DAYS),
        mail_after=mail_after,
    )


# The columns of an invoice's lines and charges, written as values (billing.rows.insert_values).
_LINE_COLUMNS = (
    "invoice_id", "kind", "description", "description_data", "subscription_id", "period_start", "period_end",
    "quantity", "unit_price", "amount",
)  # fmt: skip
_CHARGE_COLUMNS = (
    "invoice_id",
    "account_id",
    "created_at",
    "kind",
    "amount",
    "currency",
    "reason",
    "reason_data",
)


def _line_values(lines: list[Line]) -> list[tuple]:
    """The values of an invoice's lines but their invoice, their descriptions in English (the caller has
    English active)."""
    return [
        (
            line.kind,
            _english(line.description)[:255],
            line.description.data() if isinstance(line.description, Message) else {},
            line.subscription.pk if line.subscription is not None else None,
            line.period_start,
            line.period_end,
            line.quantity,
            line.unit_price,
            line.amount,
        )
        for line in lines
    ]


def _english(text: str | Message) -> str:
    return text.english() if isinstance(text, Message) else text


def _charge_values(invoice: Invoice, reason: dict) -> tuple:
    """The ledger entry that charges an issued invoice to its account; `reason`: its fields without the
    number, which billing.invoice_numbers writes in them with the invoice's."""
    return (
        invoice.pk,
        invoice.account_id,
        invoice.issued_at,
        LedgerEntry.Kind.CHARGE,
        -invoice.total,
        invoice.currency,
        reason["reason"],
        reason["reason_data"],
    )


# Invoices mailed by one task at most (billing.tasks.mail_invoices): a billing run's batch issues hundreds.
MAIL_CHUNK = 50
# An invoice's mail not out this long after it was handed to a worker is handed on again
# (billing.invoice_mail): longer than a billing run's mails wait in the mail queue.
MAIL_HANDED_ON_AGAIN_AFTER = timedelta(days=1)


def issue(
    issued_to: dict[AbstractBaseUser, list[list[Line]]],
    at: datetime,
    numbers: Numbers,
    parties: dict[int, Parties] | None = None,
    mail_delay: int = 0,
) -> list[Invoice]:
    """Issue one invoice per list of lines, for each account (in the order given): written in bulk with
    their lines and their charges on the ledger, without their numbers, which `numbers.take()` gives them
    (with those of the other invoices the transaction issues) as the transaction's last statement; mailed
    after the commit, or with `mail_delay` by beat's sweep once due. The accounts' rows are locked first
    (`locked_parties_of`, unless the caller passes what it read with the locks, by account id); the caller
    settles.

    The year's sequence row, which serialises every issuer, is locked only by `numbers.take()`, so the
    less done after it, the more accounts renew side by side."""
    parties = parties or locked_parties_of([account.pk for account in issued_to])
    mail_after = _mail_after(mail_delay)
    invoices: list[Invoice] = []
    lines_of_invoices: list[list[tuple]] = []
    amounts: dict[tax.TaxRule, _Amounts] = {}
    with translation.override(ENGLISH):  # what the rows keep in their plain columns
        for account, lines_of in issued_to.items():
            of = parties[account.pk]
            rule_amounts = amounts.setdefault(of.rule, _Amounts(of.rule))
            for lines in lines_of:
                invoices.append(_new_invoice(account, lines, at, of, rule_amounts, mail_after))
                lines_of_invoices.append(_line_values(lines))
        reason = reason_fields(charge_reason(None))
    rows.insert(invoices)
    line_rows = [
        (invoice.pk, *line)
        for invoice, lines in zip(invoices, lines_of_invoices, strict=True)
        for line in lines
    ]
    rows.insert_values(InvoiceLine, _LINE_COLUMNS, line_rows)
    rows.insert_values(
        LedgerEntry, _CHARGE_COLUMNS, [_charge_values(invoice, reason) for invoice in invoices]
    )
    numbers.add(invoices, codes=any(parties[account.pk].unique_amount_codes for account in issued_to))
    # The invoices are mailed by a worker, with their PDFs attached (billing.tasks.mail_invoices): rendering
    # PDFs never holds up an order or a billing run. A task mails up to MAIL_CHUNK of them, one by one, and
    # a retry sends again only those not sent yet. Sent after the commit, or with `mail_delay`, handed on by
    # the sweep once it is due (billing.invoice_mail.hand_on_due; see `_mail_after`).
    if not mail_delay:
        ids = [invoice.pk for invoice in invoices]
        for start in range(0, len(ids), MAIL_CHUNK):
            queue.after_commit(MAIL_INVOICES, ids[start : start + MAIL_CHUNK], robust=True)
    return invoices


def _mail_after(mail_delay: int) -> datetime:
    """When the sweep hands an issued invoice's mail to a worker if it has not gone out by then. A delayed
    mail (a new server's first invoice: its PDF is rendered once the server has booted, see
    billing.subscriptions.open_subscription) is not sent by the issuer at all: the order's request saves a
    broker message (about a millisecond of CPU), and the sweep sends the due mails of every order at once.
    Any other is sent after the commit, and handed on again only if it is still not out a day later (its
    task lost between the commit and the broker, say)."""
    return timezone.now() + (timedelta(seconds=mail_delay) if mail_delay else MAIL_HANDED_ON_AGAIN_AFTER)


def issue_invoice(
    account: AbstractBaseUser,
    lines: list[Line],
    at: datetime | None = None,
    parties: Parties | None = None,
    mail_delay: int = 0,
) -> Invoice:
    """Issue an invoice now: charged to the ledger, paid at once if credit covers it, numbered last.
    `parties`: what the caller read when it locked the account (`locked_parties`); `mail_delay`: seconds
    from now until its mail is due, when the sweep sends it (0: sent after the commit; see `_mail_after`)."""
    at = at or timezone.now()
    with transaction.atomic(savepoint=False):
        numbers = Numbers()
        known = {account.pk: parties} if parties is not None else None
        (invoice,) = issue({account: [lines]}, at, numbers, known, mail_delay=mail_delay)
        if invoice.pk in settle(account, at, locked=True, issued_only=True, issued=[invoice]):
            invoice.status, invoice.paid_at = Invoice.Status.PAID, at
        numbers.take()
    return invoice


# Settling.


def settle(
    account: AbstractBaseUser,
    at: datetime | None = None,
    *,
    locked: bool = False,
    issued_only: bool = False,
    issued: Sequence[Invoice] = (),
) -> list[int]:
    """Pay open invoices oldest first from what the account has; unsuspend a settled account. Returns the
    ids of the invoices paid. `locked`: the caller holds the account's row lock already. `issued_only`: the
    caller only issued invoices since the account was last settled, so unless one is paid now nothing can
    have become un-overdue and the unsuspension check is skipped. `issued`: the invoices the caller just
    issued, still without their numbers (billing.invoice_numbers): the mail about the payment of one names
    the number it has at the commit."""
    with transaction.atomic(savepoint=False):
        if not locked:
            lock(account)
        return settle_locked([account], at, issued_only=issued_only, issued=issued)


def settle_locked(
    accounts: Sequence[AbstractBaseUser],
    at: datetime | None = None,
    *,
    issued_only: bool = False,
    issued: Sequence[Invoice] = (),
) -> list[int]:
    """`settle` for accounts whose rows the caller has locked, all at once (a billing run's batch): the
    ids of the invoices paid."""
    at = at or timezone.now()
    by_id = {account.pk: account for account in accounts}
    paid_of: dict[int, list[tuple[int, str | None]]] = {}
    for account_id, (balance, open_invoices) in _open_invoices(list(by_id)).items():
        # What the account has: its balance without the open invoices' charges and without the tax
        # withheld from them (which settles its own invoice only).
        available = balance + sum((total - withheld for _, _, total, withheld in open_invoices), ZERO)
        paid = []
        for pk, number, total, withheld in open_invoices:
            need = total - withheld
            if available < need:
                break
            available -= need
            paid.append((pk, number))
        if paid:
            paid_of[account_id] = paid
    paid_ids = [pk for paid in paid_of.values() for pk, _ in paid]
    if paid_ids:
        _open(Invoice.objects.filter(pk__in=paid_ids)).update(status=Invoice.Status.PAID, paid_at=at)
        numbered_later = {invoice.pk: invoice for invoice in issued}
        for account_id, paid in paid_of.items():
            _mail_paid(by_id[account_id], paid, numbered_later)
    settled = list(paid_of) if issued_only else list(by_id)
    if settled:
        still_overdue = set(overdue_accounts(settled, at))
        _unsuspend([by_id[pk] for pk in settled if pk not in still_overdue], at)
    return paid_ids


# The open invoices of some accounts (oldest first), each with the tax withheld from it and its account's
# balance. The status through an expression: see `_open`.
_OPEN_INVOICES = """
SELECT i.account_id, i.id, i.number, i.total,
       (SELECT COALESCE(SUM(w.amount), 0) FROM {ledger} w WHERE w.invoice_id = i.id AND w.kind = %s),
       COALESCE(b.balance, 0)
FROM {invoices} i
LEFT JOIN (SELECT account_id, SUM(amount) AS balance FROM {ledger} WHERE account_id {ids}
           GROUP BY account_id) b ON b.account_id = i.account_id
WHERE i.account_id {ids} AND lower(i.status) = %s
ORDER BY i.account_id, i.issued_at, i.id
"""


def _open_invoices(account_ids: list[int]) -> dict[int, tuple[Decimal, list[tuple]]]:
    """The open invoices (id, number, total, tax withheld) of those of these accounts that have any, oldest
    first, with the account's balance, by account, in one statement (for every order and every batch of a
    billing run)."""
    ids, id_params = prepared_statements.any_of(account_ids)
    sql = _OPEN_INVOICES.format(ledger=LedgerEntry._meta.db_table, invoices=Invoice._meta.db_table, ids=ids)
    with connection.cursor() as cursor:
        prepared_statements.execute(
            cursor, sql, [LedgerEntry.Kind.WITHHOLDING, *id_params, *id_params, Invoice.Status.OPEN]
        )
        found = cursor.fetchall()
    open_of: dict[int, tuple[Decimal, list[tuple]]] = {}
    for account_id, pk, number, total, withheld, balance in found:
        if account_id not in open_of:
            open_of[account_id] = (quantize(_decimal(balance)), [])
        open_of[account_id][1].append((pk, number, _decimal(total), _decimal(withheld)))
    return open_of


def _decimal(value) -> Decimal:
    """A money column as it comes: a Decimal from Postgres, a number from the demo's SQLite."""
    return value if isinstance(value, Decimal) else quantize(Decimal(str(value)))


def _open(invoices: QuerySet[Invoice]) -> QuerySet[Invoice]:
    """The open ones among these invoices, found through the other conditions' indexes, never through the
    (status, due_at) one: a billing run starts with statistics taken while few invoices were open, and
    with them the planner would walk every open invoice of the installation for each batch of accounts
    (the status is compared through an expression the index does not serve)."""
    return invoices.alias(state=Lower("status")).filter(state=Invoice.Status.OPEN)


def _mail_paid(
    account: AbstractBaseUser, paid: list[tuple[int, str | None]], numbered_later: dict[int, Invoice]
) -> None:
    """After the commit, mail the account about its invoices paid (id, number), in its language; the
    messages are written then, when an invoice issued in the transaction has its number."""
    language = language_of(account)

    def send() -> None:
        with translation.override(language):
            thanks = _("Thank you: we received your payment.")
            messages = [
                (_("Invoice %(number)s is paid") % {"number": number or numbered_later[pk].number}, thanks)
                for pk, number in paid
            ]
        mail(account, messages, language)

    transaction.on_commit(send)


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


def overdue_accounts(account_ids: list[int], at: datetime) -> list[int]:
    """Which of these accounts have an open invoice past its grace period as of `at`."""
    late = Invoice.objects.filter(
        account_id__in=account_ids,
        status=Invoice.Status.OPEN,
        due_at__lte=at - timedelta(days=settings.BILLING_GRACE_DAYS),
    )
    return list(late.order_by().values_list("account_id", flat=True).distinct())


def _unsuspend(accounts: list[AbstractBaseUser], at: datetime | None = None) -> None:
    """Resume the suspended subscriptions of these accounts (settled, nothing overdue any more); each
    account's servers are unsuspended after the commit (signals.account_unsuspended)."""
    if not accounts:
        return
    by_id = {account.pk: account for account in accounts}
    suspended = Subscription.objects.filter(account_id__in=list(by_id), status=Subscription.Status.SUSPENDED)
    references: dict[int, list[str]] = defaultdict(list)
    for account_id, reference in suspended.values_list("account_id", "reference"):
        references[account_id].append(reference)
    if not references:
        return
    suspended.filter(account_id__in=list(references)).update(
        status=Subscription.Status.ACTIVE, suspended_at=None, resumed_at=at or timezone.now()
    )
    for account_id, refs in references.items():
        account = by_id[account_id]
        transaction.on_commit(
            partial(signals.account_unsuspended.send, sender=None, account=account, references=refs)
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
        status=Invoice.Status.VOID, voided_at=timezone.now(), mail_after=None
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
