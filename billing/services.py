"""Billing services: subscriptions, invoices, the ledger, payments, proration and the periodic run.

Money is Decimal, rounded to the currency's precision with ROUND_HALF_UP (billing.money). The balance is
the sum of the account's append-only ledger: issuing an invoice posts its total as a charge, a payment
posts a payment, voiding posts a credit. Open invoices are paid oldest first from what the account has
(balance plus the open invoices' own charges). Every periodic step is guarded by state written in the
same transaction, so running it twice for the same moment changes nothing the second time.
"""

from __future__ import annotations

import calendar
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail, send_mass_mail
from django.db import IntegrityError, connection, transaction
from django.db.models import DecimalField, F, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from . import signals
from .models import (
    BillingProfile,
    Invoice,
    InvoiceLine,
    InvoiceSequence,
    LedgerEntry,
    Payment,
    Plan,
    Subscription,
)
from .money import currency, quantize

log = logging.getLogger(__name__)
ZERO = Decimal("0")
HOUR = timedelta(hours=1)


class BillingError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InsufficientCredit(BillingError):
    pass


class OwnAccount(BillingError):
    """Staff may not move money on, or set the terms of, their own account."""


class ReferenceTaken(BillingError):
    """A payment reference is already used by another customer's payment."""


def _refuse_own(account, by) -> None:
    if by is not None and by.pk == account.pk:
        raise OwnAccount(
            _(
                "You cannot record payments, credits, discounts or prices on your own account; "
                "ask another staff member."
            )
        )


# Prices.


_UNSET = object()


def monthly_price(account, plan: Plan, profile=_UNSET) -> Decimal:
    """The plan's monthly price for this customer (a custom price, or the list price less a discount).
    Pass the customer's BillingProfile (or None) when pricing many plans, to read it once."""
    if profile is _UNSET:
        profile = BillingProfile.objects.filter(account=account).first()
    if profile and plan.slug in profile.custom_prices:
        return quantize(Decimal(str(profile.custom_prices[plan.slug])))
    price = plan.price_monthly
    if profile and profile.discount_percent:
        price = price * (Decimal(100) - profile.discount_percent) / Decimal(100)
    return quantize(price)


def hourly_price(account, plan: Plan) -> Decimal:
    """The hourly price, with the same discount, never more than a month's price an hour."""
    ratio = monthly_price(account, plan) / plan.price_monthly if plan.price_monthly else Decimal(1)
    return min((plan.price_hourly * ratio).quantize(Decimal("0.0001")), monthly_price(account, plan))


# The ledger.


def annotate_balance(users):
    """`balance_total` on each user of the queryset, as a subquery of its own (a join with the ledger next
    to other aggregates would multiply them)."""
    total = (
        LedgerEntry.objects.filter(account=OuterRef("pk"))
        .order_by()
        .values("account")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    money = DecimalField(max_digits=16, decimal_places=2)
    return users.annotate(
        balance_total=Coalesce(Subquery(total, output_field=money), ZERO, output_field=money)
    )


def balance(account) -> Decimal:
    """The account's balance, derived from its ledger (negative: the customer owes)."""
    total = LedgerEntry.objects.filter(account=account).aggregate(total=Sum("amount"))["total"]
    return quantize(total or ZERO)


def total_paid(account) -> Decimal:
    """What the account has paid in the installation's currency: every payment staff recorded or a provider
    confirmed (a payment row exists only once the money is settled)."""
    payments = Payment.objects.filter(account=account, currency=currency())
    return quantize(payments.aggregate(total=Sum("amount"))["total"] or ZERO)


def cheapest_monthly_price() -> Decimal | None:
    """The list monthly price of the cheapest plan on sale (None when none is on sale)."""
    price = (
        Plan.objects.filter(is_active=True)
        .order_by("price_monthly")
        .values_list("price_monthly", flat=True)
        .first()
    )
    return None if price is None else quantize(price)


def _post(
    account, kind: str, amount: Decimal, reason: str, by=None, invoice=None, payment=None, at=None
) -> LedgerEntry:
    return LedgerEntry.objects.create(
        created_at=at or timezone.now(),
        account=account,
        kind=kind,
        amount=quantize(amount),
        currency=currency(),
        reason=reason[:255],
        created_by=by,
        invoice=invoice,
        payment=payment,
    )


def _lock(account):
    """Serialise money movements of one account on its row."""
    return get_user_model().objects.select_for_update().get(pk=account.pk)


# Invoices.


@dataclass
class Line:
    kind: str
    description: str
    unit_price: Decimal
    quantity: Decimal = Decimal(1)
    subscription: Subscription | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None

    @property
    def amount(self) -> Decimal:
        return quantize(self.unit_price * self.quantity)


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
            description=line.description[:255],
            subscription=line.subscription,
            period_start=line.period_start,
            period_end=line.period_end,
            quantity=line.quantity,
            unit_price=line.unit_price,
            amount=line.amount,
        )
        for line in lines
    ]


def _charge(invoice: Invoice) -> LedgerEntry:
    """The ledger entry (not saved) that charges an issued invoice to its account."""
    return LedgerEntry(
        created_at=invoice.issued_at,
        account=invoice.account,
        kind=LedgerEntry.Kind.CHARGE,
        amount=-invoice.total,
        currency=invoice.currency,
        reason=(_("Invoice %(number)s") % {"number": invoice.number})[:255],
        invoice=invoice,
    )


def _issue(account, lines_of: list[list[Line]], at: datetime) -> list[Invoice]:
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
    messages = [
        (_("Invoice %(number)s") % {"number": invoice.number}, _invoice_text(invoice)) for invoice in invoices
    ]
    transaction.on_commit(lambda: _mail_many(account, messages))
    return invoices


def issue_invoice(account, lines: list[Line], at: datetime | None = None) -> Invoice:
    """Issue an invoice now: numbered, charged to the ledger, paid at once if credit covers it."""
    at = at or timezone.now()
    with transaction.atomic(savepoint=False):
        _lock(account)
        (invoice,) = _issue(account, [lines], at)
        if invoice in _settle(account, at, locked=True, issued_only=True):
            invoice.status, invoice.paid_at = Invoice.Status.PAID, at
    return invoice


def settle(account, at: datetime | None = None) -> list[Invoice]:
    """Pay open invoices oldest first from what the account has; unsuspend a settled account."""
    return _settle(account, at or timezone.now())


def _settle(account, at: datetime, locked: bool = False, issued_only: bool = False) -> list[Invoice]:
    """settle(). `locked`: the caller holds the account's row lock already. `issued_only`: the caller only
    issued invoices since the account was last settled, so unless one is paid now nothing can have become
    un-overdue and the unsuspension check is skipped."""
    paid = []
    with transaction.atomic(savepoint=False):
        if not locked:
            _lock(account)
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
            thanks = _("Thank you: we received your payment.")
            messages = [(_("Invoice %(number)s is paid") % {"number": i.number}, thanks) for i in paid]
            transaction.on_commit(lambda: _mail_many(account, messages))
        if (paid or not issued_only) and not _overdue(account, at).exists():
            _unsuspend(account, at)
    return paid


def void_invoice(invoice: Invoice, by=None, reason: str = "") -> Invoice:
    """Cancel an open invoice: its charge is credited back."""
    _refuse_own(invoice.account, by)
    with transaction.atomic():
        _lock(invoice.account)
        if not _void_locked(invoice, by, reason):
            raise BillingError(_("Only open invoices can be voided."))
        settle(invoice.account)
        signals.invoice_voided.send(sender=None, account=invoice.account, invoice=invoice, by=by)
    invoice.refresh_from_db()
    return invoice


def _void_locked(invoice: Invoice, by=None, reason: str = "") -> bool:
    """Void an open invoice and credit its charge (the caller holds the account's lock); False when it was
    not open (voided or paid meanwhile)."""
    if not Invoice.objects.filter(pk=invoice.pk, status=Invoice.Status.OPEN).update(
        status=Invoice.Status.VOID, voided_at=timezone.now()
    ):
        return False
    _post(
        invoice.account,
        LedgerEntry.Kind.CREDIT,
        invoice.total,
        reason or _("Invoice %(number)s voided") % {"number": invoice.number},
        by=by,
        invoice=invoice,
    )
    return True


# Payments and adjustments.


def record_payment(
    account,
    amount: Decimal,
    reference: str,
    *,
    method: str = "bank_transfer",
    by=None,
    at: datetime | None = None,
) -> tuple[Payment, bool]:
    """Record money received; the same reference again returns the first payment (idempotent). A reference
    another customer's payment holds raises ReferenceTaken; staff cannot record on their own account."""
    _refuse_own(account, by)
    amount = quantize(Decimal(amount))
    if amount <= 0:
        raise BillingError(_("A payment must be more than zero."))
    reference = reference.strip()
    if not reference:
        raise BillingError(_("A payment needs a reference (e.g. the bank transfer's)."))
    existing = Payment.objects.filter(reference=reference).first()
    if existing:
        if existing.account_id != account.pk:
            raise ReferenceTaken(_("This reference belongs to another customer's payment."))
        return existing, False
    try:
        with transaction.atomic():
            _lock(account)
            payment = Payment.objects.create(
                account=account,
                amount=amount,
                currency=currency(),
                reference=reference,
                method=method,
                recorded_by=by,
                received_at=at or timezone.now(),
            )
            _post(
                account,
                LedgerEntry.Kind.PAYMENT,
                amount,
                _("Payment %(ref)s") % {"ref": reference},
                by=by,
                payment=payment,
                at=at,
            )
            settle(account, at)
            signals.payment_recorded.send(sender=None, account=account, payment=payment, by=by)
    except IntegrityError:  # the same reference recorded concurrently
        existing = Payment.objects.get(reference=reference)
        if existing.account_id != account.pk:
            raise ReferenceTaken(_("This reference belongs to another customer's payment.")) from None
        return existing, False
    return payment, True


def adjust(account, amount: Decimal, reason: str, by) -> LedgerEntry:
    """A manual correction (positive credits the account) with its reason and who made it."""
    _refuse_own(account, by)
    if not reason.strip():
        raise BillingError(_("An adjustment needs a reason."))
    with transaction.atomic():
        _lock(account)
        entry = _post(account, LedgerEntry.Kind.ADJUSTMENT, Decimal(amount), reason, by=by)
        settle(account)
        signals.balance_adjusted.send(sender=None, account=account, entry=entry, by=by)
    return entry


# Subscriptions.


def add_month(moment: datetime, anchor_day: int) -> datetime:
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return moment.replace(year=year, month=month, day=min(anchor_day, calendar.monthrange(year, month)[1]))


def first_period_price(account, plan: Plan) -> Decimal:
    return monthly_price(account, plan)


def require_credit(account, plan: Plan) -> None:
    """Prepaid orders: the balance must cover the first month. Call with the account's row locked."""
    needed = first_period_price(account, plan)
    if balance(account) < needed:
        raise InsufficientCredit(
            _(
                "Insufficient credit: the first month costs %(price)s %(currency)s "
                "and your balance is %(balance)s."
            )
            % {"price": needed, "currency": currency(), "balance": balance(account)}
        )


def open_subscription(
    account,
    plan: Plan,
    reference: str,
    label: str,
    *,
    cycle: str = Subscription.Cycle.MONTHLY,
    at: datetime | None = None,
) -> Subscription:
    """Start billing a server. Monthly: the first month is invoiced at once (paid from credit if any)."""
    at = at or timezone.now()
    price = (
        monthly_price(account, plan) if cycle == Subscription.Cycle.MONTHLY else hourly_price(account, plan)
    )
    local = timezone.localtime(at)
    subscription = Subscription.objects.create(
        account=account,
        reference=reference,
        label=label,
        plan=plan,
        cycle=cycle,
        price=price,
        currency=currency(),
        started_at=at,
        period_start=at,
        paid_through=add_month(local, local.day) if cycle == Subscription.Cycle.MONTHLY else at,
    )
    if cycle == Subscription.Cycle.MONTHLY:
        issue_invoice(account, [_plan_line(subscription, at, subscription.paid_through)], at)
    return subscription


def _plan_line(subscription: Subscription, start: datetime, end: datetime) -> Line:
    return Line(
        kind=InvoiceLine.Kind.PLAN,
        description=_("%(plan)s for %(server)s, %(start)s to %(end)s")
        % {
            "plan": subscription.plan.name,
            "server": subscription.label,
            "start": timezone.localtime(start).date(),
            "end": timezone.localtime(end).date(),
        },
        unit_price=subscription.price,
        subscription=subscription,
        period_start=start,
        period_end=end,
    )


def active_subscription(reference: str) -> Subscription | None:
    return Subscription.objects.filter(reference=reference).exclude(status=Subscription.Status.ENDED).first()


def proration(
    subscription: Subscription, new_plan: Plan, at: datetime | None = None, profile=_UNSET
) -> Decimal:
    """What a plan change costs now (positive) or returns (negative) for the rest of the paid period."""
    at = at or timezone.now()
    if subscription.cycle != Subscription.Cycle.MONTHLY or at >= subscription.paid_through:
        return ZERO
    new_price = monthly_price(subscription.account, new_plan, profile)
    # Exact: whole microseconds as Decimals (a float ratio would round halves the wrong way).
    tick = timedelta(microseconds=1)
    remaining = Decimal((subscription.paid_through - at) // tick)
    period = Decimal((subscription.paid_through - subscription.period_start) // tick)
    return quantize((new_price - subscription.price) * remaining / period)


def _lock_subscription(reference: str) -> Subscription | None:
    """Lock the live subscription of a server, after its account's row: the order in which every billing
    step takes the two locks, so that two steps never wait on each other."""
    live = Subscription.objects.filter(reference=reference).exclude(status=Subscription.Status.ENDED)
    account_id = live.values_list("account_id", flat=True).first()
    if account_id is None:
        return None
    _lock(get_user_model()(pk=account_id))
    return live.select_for_update(of=("self",)).first()


def change_plan(reference: str, new_plan: Plan, at: datetime | None = None) -> dict:
    """Move a server's subscription to another plan. Monthly: an upgrade is invoiced pro rata for the rest
    of the period, a downgrade credited (PRORATE_DOWNGRADE_CREDIT). Hourly: each plan bills its own hours.
    Returns what to undo it with if the resize fails."""
    at = at or timezone.now()
    with transaction.atomic():
        subscription = _lock_subscription(reference)
        if subscription is None:
            return {}
        undo = {"plan": subscription.plan.slug, "price": str(subscription.price), "cycle": subscription.cycle}
        if subscription.cycle == Subscription.Cycle.HOURLY:
            Subscription.objects.filter(pk=subscription.pk).update(
                status=Subscription.Status.ENDED, ended_at=at
            )
            new = open_subscription(
                subscription.account,
                new_plan,
                reference,
                subscription.label,
                cycle=Subscription.Cycle.HOURLY,
                at=at,
            )
            return {**undo, "ended": subscription.pk, "opened": new.pk}
        amount = proration(subscription, new_plan, at)
        Subscription.objects.filter(pk=subscription.pk).update(
            plan=new_plan, price=monthly_price(subscription.account, new_plan)
        )
        if amount > 0:
            invoice = issue_invoice(
                subscription.account,
                [
                    Line(
                        kind=InvoiceLine.Kind.PRORATION,
                        description=_("Upgrade of %(server)s to %(plan)s for the rest of the period")
                        % {"server": subscription.label, "plan": new_plan.name},
                        unit_price=amount,
                        subscription=subscription,
                        period_start=at,
                        period_end=subscription.paid_through,
                    )
                ],
                at,
            )
            undo["invoice"] = invoice.pk
        elif amount < 0 and settings.PRORATE_DOWNGRADE_CREDIT:
            entry = _post(
                subscription.account,
                LedgerEntry.Kind.CREDIT,
                -amount,
                _("Downgrade of %(server)s to %(plan)s")
                % {"server": subscription.label, "plan": new_plan.name},
            )
            undo["credit"] = entry.pk
            settle(subscription.account, at)
        return undo


def undo_plan_change(reference: str, undo: dict) -> None:
    """Put a subscription back as it was before change_plan (the resize failed)."""
    if not undo:
        return
    with transaction.atomic():
        if "opened" in undo:
            Subscription.objects.filter(pk=undo["opened"]).delete()
            Subscription.objects.filter(pk=undo["ended"]).update(
                status=Subscription.Status.ACTIVE, ended_at=None
            )
            return
        subscription = _lock_subscription(reference)
        if subscription is None:
            return
        Subscription.objects.filter(pk=subscription.pk).update(
            plan=Plan.objects.get(slug=undo["plan"]), price=Decimal(undo["price"])
        )
        if "invoice" in undo:
            invoice = Invoice.objects.get(pk=undo["invoice"])
            if invoice.status == Invoice.Status.OPEN:
                void_invoice(invoice, reason=_("Resize failed"))
            elif invoice.status == Invoice.Status.PAID:
                _post(
                    subscription.account,
                    LedgerEntry.Kind.CREDIT,
                    invoice.total,
                    _("Resize failed"),
                    invoice=invoice,
                )
        if "credit" in undo:
            credit = LedgerEntry.objects.get(pk=undo["credit"])
            _post(subscription.account, LedgerEntry.Kind.ADJUSTMENT, -credit.amount, _("Resize failed"))


def cancel_unused_subscription(reference: str, at: datetime | None = None) -> bool:
    """The server never became usable (its create failed): end its subscription and take back what it was
    charged. An open invoice of it is voided; a paid one is credited back to the balance. Idempotent: the
    subscription's move to ended is the guard, so a retry (or a crash before the commit) charges nothing
    back twice. Returns whether anything was cancelled now."""
    at = at or timezone.now()
    with transaction.atomic():
        subscription = _lock_subscription(reference)
        if subscription is None:
            return False
        Subscription.objects.filter(pk=subscription.pk).update(status=Subscription.Status.ENDED, ended_at=at)
        account = subscription.account
        lines = InvoiceLine.objects.filter(subscription=subscription).select_related("invoice")
        invoices = {line.invoice_id: line.invoice for line in lines}
        reason = _("%(server)s could not be created") % {"server": subscription.label}
        for invoice in invoices.values():
            own = [line for line in lines if line.invoice_id == invoice.pk]
            only_this = (
                not InvoiceLine.objects.filter(invoice=invoice).exclude(subscription=subscription).exists()
            )
            if invoice.status == Invoice.Status.OPEN and only_this:
                _void_locked(invoice, reason=reason)
                signals.invoice_voided.send(sender=None, account=account, invoice=invoice, by=None)
            elif invoice.status in (Invoice.Status.OPEN, Invoice.Status.PAID):
                amount = sum((line.amount for line in own), ZERO)
                if amount:
                    _post(account, LedgerEntry.Kind.CREDIT, amount, reason, invoice=invoice)
        settle(account, at)
        return True


def end_subscription(reference: str, at: datetime | None = None) -> None:
    """The server was deleted: stop billing it (hourly hours are invoiced at the month's end)."""
    Subscription.objects.filter(reference=reference).exclude(status=Subscription.Status.ENDED).update(
        status=Subscription.Status.ENDED, ended_at=at or timezone.now()
    )


# The periodic run.


def _overdue(account, at: datetime):
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


def _due_monthly(at: datetime):
    return Subscription.objects.filter(cycle=Subscription.Cycle.MONTHLY, paid_through__lte=at).exclude(
        status=Subscription.Status.ENDED
    )


def renew(at: datetime) -> int:
    """Invoice each monthly subscription whose paid period has ended, one invoice per period, account by
    account (one transaction each). Returns the number of invoices issued."""
    accounts = _due_monthly(at).order_by("account_id").values_list("account_id", flat=True).distinct()
    return sum(_renew_account(account_id, at) for account_id in list(accounts))


def _renew_account(account_id: int, at: datetime) -> int:
    """Every monthly period now due on one account: the invoices made, numbered, charged and mailed
    together, and the account settled once. A crash anywhere leaves all of it undone (one transaction);
    a second run for the same moment finds nothing due."""
    with transaction.atomic():
        account = _lock(get_user_model()(pk=account_id))
        subscriptions = list(
            _due_monthly(at)
            .filter(account_id=account_id)
            .select_for_update(of=("self",))
            .select_related("plan")
            .order_by("pk")
        )
        periods: list[list[Line]] = []
        for subscription in subscriptions:
            subscription.account = account
            anchor = timezone.localtime(subscription.started_at).day
            while subscription.paid_through <= at:
                start = subscription.paid_through
                end = add_month(timezone.localtime(start), anchor)
                subscription.period_start, subscription.paid_through = start, end
                periods.append([_plan_line(subscription, start, end)])
        if not periods:
            return 0
        Subscription.objects.bulk_update(subscriptions, ["period_start", "paid_through"])
        invoices = _issue(account, periods, at)
        _settle(account, at, locked=True, issued_only=True)
    return len(invoices)


def _month_start(at: datetime) -> datetime:
    local = timezone.localtime(at)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def invoice_hourly(at: datetime) -> int:
    """At a month's end, invoice each hourly subscription's hours in that month (at most a month's price)."""
    cutoff = _month_start(at)
    count = 0
    due = Subscription.objects.filter(cycle=Subscription.Cycle.HOURLY, paid_through__lt=cutoff).filter(
        Q(ended_at__isnull=True) | Q(ended_at__gt=F("paid_through"))
    )
    for subscription_id, account_id in due.values_list("pk", "account_id"):
        with transaction.atomic():
            _lock(get_user_model()(pk=account_id))  # the account first, as every billing step locks it
            subscription = Subscription.objects.select_for_update().get(pk=subscription_id)
            start = subscription.paid_through
            end = min(cutoff, subscription.ended_at) if subscription.ended_at else cutoff
            if end <= start:
                continue
            lines = []
            month_start = _month_start(start)
            while month_start < end:
                month_end = add_month(month_start, 1)
                segment_start, segment_end = max(start, month_start), min(end, month_end)
                hours = math.ceil((segment_end - segment_start) / HOUR)
                cap = monthly_price(subscription.account, subscription.plan)
                unit = subscription.price
                if hours * unit > cap:  # never more than the monthly price in one month
                    unit, hours = cap, 1
                lines.append(
                    Line(
                        kind=InvoiceLine.Kind.HOURLY,
                        description=_("%(plan)s for %(server)s, %(start)s to %(end)s (%(hours)s h)")
                        % {
                            "plan": subscription.plan.name,
                            "server": subscription.label,
                            "start": timezone.localtime(segment_start).date(),
                            "end": timezone.localtime(segment_end).date(),
                            "hours": math.ceil((segment_end - segment_start) / HOUR),
                        },
                        unit_price=unit,
                        quantity=Decimal(hours),
                        subscription=subscription,
                        period_start=segment_start,
                        period_end=segment_end,
                    )
                )
                month_start = month_end
            Subscription.objects.filter(pk=subscription.pk).update(paid_through=end)
            issue_invoice(subscription.account, lines, at)
            count += 1
    return count


def _mail(account, subject: str, body: str) -> None:
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [account.email], fail_silently=True)


def _mail_many(account, messages: list[tuple[str, str]]) -> None:
    """Several mails to one customer over one connection."""
    send_mass_mail(
        [(subject, body, settings.DEFAULT_FROM_EMAIL, [account.email]) for subject, body in messages],
        fail_silently=True,
    )


def _invoice_text(invoice: Invoice) -> str:
    return _("Invoice %(number)s for %(total)s %(currency)s is due on %(due)s.") % {
        "number": invoice.number,
        "total": invoice.total,
        "currency": invoice.currency,
        "due": timezone.localtime(invoice.due_at).date(),
    }


def remind(at: datetime) -> int:
    """Email once before an open invoice's due date."""
    soon = Invoice.objects.filter(
        status=Invoice.Status.OPEN,
        reminded_at__isnull=True,
        due_at__gt=at,
        due_at__lte=at + timedelta(days=settings.INVOICE_REMIND_DAYS),
    ).select_related("account")
    count = 0
    for invoice in soon:
        if Invoice.objects.filter(pk=invoice.pk, reminded_at__isnull=True).update(reminded_at=at):
            _mail(
                invoice.account,
                _("Reminder: invoice %(number)s is due soon") % {"number": invoice.number},
                _invoice_text(invoice),
            )
            count += 1
    return count


def dun(at: datetime) -> dict[str, int]:
    """Overdue invoices: tell the customer; after the grace period suspend their servers; warn before,
    and after the termination period, terminate them."""
    counts = {"overdue": 0, "suspended": 0, "warned": 0, "terminated": 0}
    overdue = Invoice.objects.filter(status=Invoice.Status.OPEN, due_at__lte=at).select_related("account")
    for invoice in overdue.filter(overdue_notified_at__isnull=True):
        if Invoice.objects.filter(pk=invoice.pk, overdue_notified_at__isnull=True).update(
            overdue_notified_at=at
        ):
            _mail(
                invoice.account,
                _("Invoice %(number)s is overdue") % {"number": invoice.number},
                _invoice_text(invoice),
            )
            counts["overdue"] += 1
    grace = at - timedelta(days=settings.BILLING_GRACE_DAYS)
    for account_id in (
        overdue.filter(due_at__lte=grace).order_by().values_list("account", flat=True).distinct()
    ):
        with transaction.atomic():
            account = _lock(get_user_model()(pk=account_id))
            if not _overdue(account, at).exists():
                continue  # paid between the list and the lock
            active = Subscription.objects.filter(account=account, status=Subscription.Status.ACTIVE)
            references = list(active.values_list("reference", flat=True))
            if references:
                active.update(status=Subscription.Status.SUSPENDED, suspended_at=at)
                transaction.on_commit(
                    lambda a=account, r=references: signals.account_suspended.send(
                        sender=None, account=a, references=r
                    )
                )
                counts["suspended"] += 1
    # What the panel could not act on at once (a busy server, a host down) is asked again each run; the
    # panel ignores servers that are done already.
    still = Subscription.objects.filter(
        status=Subscription.Status.SUSPENDED, account__in=overdue.filter(due_at__lte=grace).values("account")
    )
    _resend(signals.account_suspended, still)
    recent = at - timedelta(days=settings.BILLING_TERMINATE_DAYS)
    _resend(
        signals.account_unsuspended,
        Subscription.objects.filter(status=Subscription.Status.ACTIVE, resumed_at__gte=recent),
    )
    _resend(signals.subscriptions_terminated, Subscription.objects.filter(terminated_at__gte=recent))
    warn_from = at - timedelta(
        days=settings.BILLING_TERMINATE_DAYS - settings.BILLING_TERMINATION_WARNING_DAYS
    )
    for invoice in overdue.filter(due_at__lte=warn_from, termination_warned_at__isnull=True):
        if Invoice.objects.filter(pk=invoice.pk, termination_warned_at__isnull=True).update(
            termination_warned_at=at
        ):
            when = invoice.due_at + timedelta(days=settings.BILLING_TERMINATE_DAYS)
            _mail(
                invoice.account,
                _("Your servers will be deleted on %(date)s") % {"date": timezone.localtime(when).date()},
                _(
                    "Invoice %(number)s is still unpaid. Unless it is paid before %(date)s, "
                    "the servers of your account will be deleted with their data."
                )
                % {"number": invoice.number, "date": timezone.localtime(when).date()},
            )
            counts["warned"] += 1
    end = at - timedelta(days=settings.BILLING_TERMINATE_DAYS)
    for account_id in overdue.filter(due_at__lte=end).order_by().values_list("account", flat=True).distinct():
        with transaction.atomic():
            account = _lock(get_user_model()(pk=account_id))
            if not overdue.filter(account=account, due_at__lte=end).exists():
                continue  # paid between the list and the lock
            live = Subscription.objects.filter(account=account).exclude(status=Subscription.Status.ENDED)
            references = list(live.values_list("reference", flat=True))
            if references:
                live.update(status=Subscription.Status.ENDED, ended_at=at, terminated_at=at)
                transaction.on_commit(
                    lambda a=account, r=references: signals.subscriptions_terminated.send(
                        sender=None, account=a, references=r
                    )
                )
                counts["terminated"] += 1
    return counts


def _resend(signal, subscriptions) -> None:
    for account_id in set(subscriptions.order_by().values_list("account", flat=True)):
        account = get_user_model().objects.get(pk=account_id)
        references = list(subscriptions.filter(account=account).values_list("reference", flat=True))
        for _receiver, result in signal.send_robust(sender=None, account=account, references=references):
            if isinstance(result, Exception):
                log.error("billing: a receiver of %s failed: %r", signal, result)


def run(at: datetime | None = None) -> dict[str, int]:
    """Every periodic billing step as of `at` (beat and `manage.py billing_run` call this)."""
    at = at or timezone.now()
    result = {"renewed": renew(at), "hourly": invoice_hourly(at), "reminded": remind(at)}
    result.update(dun(at))
    return result


def plans_on_sale():
    return Plan.objects.filter(is_active=True)


def top_up_reference(account, provider: str) -> str:
    """A unique reference for a provider checkout (the provider echoes it back in its notification)."""
    import secrets as _secrets

    return f"{provider}-{account.pk}-{_secrets.token_hex(6)}"


def proration_preview(subscription: Subscription, plans, at: datetime | None = None) -> dict[int, Decimal]:
    """proration() for many plans at once (the resize page), reading the customer's terms once."""
    profile = BillingProfile.objects.filter(account_id=subscription.account_id).first()
    return {plan.pk: proration(subscription, plan, at, profile) for plan in plans}


def set_billing_terms(
    account, discount_percent: Decimal, custom_prices: dict[str, Decimal], by=None
) -> BillingProfile:
    """Staff set a customer's discount and custom monthly prices. They apply to new subscriptions and plan
    changes; running subscriptions keep the price they were sold at until they change plan."""
    _refuse_own(account, by)
    if not Decimal(0) <= Decimal(discount_percent) <= Decimal(100):
        raise BillingError(_("A discount is between 0 and 100 percent."))
    if any(Decimal(price) < 0 for price in custom_prices.values()):
        raise BillingError(_("A price cannot be negative."))
    with transaction.atomic():
        _lock(account)
        profile, _created = BillingProfile.objects.update_or_create(
            account=account,
            defaults={
                "discount_percent": Decimal(discount_percent),
                "custom_prices": {
                    slug: str(quantize(Decimal(price))) for slug, price in custom_prices.items()
                },
            },
        )
        signals.billing_terms_changed.send(sender=None, account=account, profile=profile, by=by)
    return profile
