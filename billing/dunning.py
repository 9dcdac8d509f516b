"""Dunning: remind before an invoice is due, tell the customer when it is overdue, suspend the account's
servers after the grace period, warn before and after the termination period delete them. Billing acts
on servers only through signals the panel receives; what the panel could not act on is asked again.
Each step is guarded by state written with it, so running it twice for one moment acts once."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import QuerySet
from django.dispatch import Signal
from django.utils import formats, timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from . import signals
from .invoices import invoice_text, mail, overdue
from .ledger import lock
from .models import Invoice, Subscription, SubscriptionAddon
from .texts import language_of

log = logging.getLogger(__name__)


def _mail_about(invoice: Invoice, subject: str, body: str | None = None, **values) -> None:
    """One mail to the invoice's account in the account's language (whatever language the billing run is
    in): `subject` and `body` are English messages (marked with gettext_noop) filled in with the invoice's
    number and `values` (callables that format a value in the active language), translated and formatted
    when the mail is made; without a body the mail says `invoice_text`."""
    account = invoice.account
    language = language_of(account)
    with translation.override(language):
        values = {"number": invoice.number, **{key: shown() for key, shown in values.items()}}
        text = _(body) % values if body else invoice_text(invoice)
        mail(account, [(_(subject) % values, text)], language)


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
            _mail_about(invoice, gettext_noop("Reminder: invoice %(number)s is due soon"))
            count += 1
    return count


def dun(at: datetime) -> dict[str, int]:
    """Overdue invoices: tell the customer; after the grace period suspend their servers; warn before,
    and after the termination period, terminate them."""
    counts = {"overdue": 0, "suspended": 0, "warned": 0, "terminated": 0}
    overdue_invoices = Invoice.objects.filter(status=Invoice.Status.OPEN, due_at__lte=at).select_related(
        "account"
    )
    for invoice in overdue_invoices.filter(overdue_notified_at__isnull=True):
        if Invoice.objects.filter(pk=invoice.pk, overdue_notified_at__isnull=True).update(
            overdue_notified_at=at
        ):
            _mail_about(invoice, gettext_noop("Invoice %(number)s is overdue"))
            counts["overdue"] += 1
    grace = at - timedelta(days=settings.BILLING_GRACE_DAYS)
    for account_id in (
        overdue_invoices.filter(due_at__lte=grace).order_by().values_list("account", flat=True).distinct()
    ):
        with transaction.atomic():
            account = lock(get_user_model()(pk=account_id))
            if not overdue(account, at).exists():
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
        status=Subscription.Status.SUSPENDED,
        account__in=overdue_invoices.filter(due_at__lte=grace).values("account"),
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
    for invoice in overdue_invoices.filter(due_at__lte=warn_from, termination_warned_at__isnull=True):
        if Invoice.objects.filter(pk=invoice.pk, termination_warned_at__isnull=True).update(
            termination_warned_at=at
        ):
            when = timezone.localtime(invoice.due_at + timedelta(days=settings.BILLING_TERMINATE_DAYS))
            _mail_about(
                invoice,
                gettext_noop("Your servers will be deleted on %(date)s"),
                gettext_noop(
                    "Invoice %(number)s is still unpaid. Unless it is paid before %(date)s, "
                    "the servers of your account will be deleted with their data."
                ),
                date=partial(formats.date_format, when, "DATE_FORMAT"),
            )
            counts["warned"] += 1
    end = at - timedelta(days=settings.BILLING_TERMINATE_DAYS)
    for account_id in (
        overdue_invoices.filter(due_at__lte=end).order_by().values_list("account", flat=True).distinct()
    ):
        with transaction.atomic():
            account = lock(get_user_model()(pk=account_id))
            if not overdue_invoices.filter(account=account, due_at__lte=end).exists():
                continue  # paid between the list and the lock
            live = Subscription.objects.filter(account=account).exclude(status=Subscription.Status.ENDED)
            references = list(live.values_list("reference", flat=True))
            if references:
                SubscriptionAddon.objects.filter(subscription__in=live).end(at)
                live.update(status=Subscription.Status.ENDED, ended_at=at, terminated_at=at)
                transaction.on_commit(
                    lambda a=account, r=references: signals.subscriptions_terminated.send(
                        sender=None, account=a, references=r
                    )
                )
                counts["terminated"] += 1
    return counts


def _resend(signal: Signal, subscriptions: QuerySet[Subscription]) -> None:
    for account_id in set(subscriptions.order_by().values_list("account", flat=True)):
        account = get_user_model().objects.get(pk=account_id)
        references = list(subscriptions.filter(account=account).values_list("reference", flat=True))
        for _receiver, result in signal.send_robust(sender=None, account=account, references=references):
            if isinstance(result, Exception):
                log.error("billing: a receiver of %s failed: %r", signal, result)
