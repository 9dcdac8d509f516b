"""The periodic billing run (beat and `manage.py billing_run`): invoice the monthly periods that ended and
the hourly usage of the month that ended, each with the subscription's add-ons (billing.addons), then
remind and dun (billing.dunning). Every step is guarded by state written in the same transaction, so
running it twice for the same moment changes nothing the second time."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_noop

from .addons import addons_for_renewal, hourly_addons, hourly_lines, renewal_lines
from .dunning import dun, remind
from .invoice_numbers import Numbers
from .invoices import Line, issue, issue_invoice, settle_locked
from .ledger import lock, lock_accounts
from .models import InvoiceLine, Plan, Subscription
from .periods import add_month, month_start
from .prices import monthly_price
from .subscriptions import plan_line
from .texts import Message, date_value

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)


def run(at: datetime | None = None, *, renewals: bool = True) -> dict[str, int]:
    """Every periodic billing step as of `at` (`manage.py billing_run`; beat's task sends the renewals to
    the workers in batches of accounts instead and calls this with `renewals=False`)."""
    at = at or timezone.now()
    result = {"renewed": renew(at)} if renewals else {}
    result.update({"hourly": invoice_hourly(at), "reminded": remind(at)})
    result.update(dun(at))
    return result


def _due_monthly(at: datetime) -> QuerySet[Subscription]:
    return Subscription.objects.filter(cycle=Subscription.Cycle.MONTHLY, paid_through__lte=at).exclude(
        status=Subscription.Status.ENDED
    )


def renew(at: datetime) -> int:
    """Invoice each monthly subscription whose paid period has ended, one invoice per period, in batches
    of accounts (one transaction each). Returns the number of invoices issued."""
    return renew_accounts(_due_accounts(at), at)


def _due_accounts(at: datetime) -> list[int]:
    return list(_due_monthly(at).order_by("account_id").values_list("account_id", flat=True).distinct())


def due_account_batches(at: datetime, size: int) -> Iterator[list[int]]:
    """The accounts with a monthly period due at `at`, in batches of `size` (beat's task sends a renewal
    task for each batch)."""
    accounts = _due_accounts(at)
    for start in range(0, len(accounts), max(1, size)):
        yield accounts[start : start + max(1, size)]


def renew_accounts(account_ids: Iterable[int], at: datetime) -> int:
    """Renew what is due at `at` on each of these accounts, BILLING_RENEWAL_BATCH accounts to a transaction
    (a second run, or a batch delivered again, finds nothing due on an account renewed already). Returns
    the invoices issued."""
    ids = sorted(set(account_ids))
    size = max(1, settings.BILLING_RENEWAL_BATCH)
    return sum(_renew_batch_or_each(ids[start : start + size], at) for start in range(0, len(ids), size))


def _renew_batch_or_each(account_ids: list[int], at: datetime) -> int:
    """The batch in one transaction; when that fails (one account's renewal raising rolls all of them back),
    each account in a transaction of its own, so that one account that cannot be renewed holds back no
    other. The first failure is raised again after the others are renewed (the task is retried, and finds
    only what is still due). Inside a caller's transaction a failure is the caller's to handle."""
    try:
        return _renew_batch(account_ids, at)
    except Exception:
        if len(account_ids) == 1 or connection.in_atomic_block:
            raise
        log.exception("renewing %d accounts together failed; renewing them one by one", len(account_ids))
    issued, failure = 0, None
    for account_id in account_ids:
        try:
            issued += _renew_batch([account_id], at)
        except Exception as exc:
            log.exception("renewing account %s failed", account_id)
            failure = failure or exc
    if failure is not None:
        raise failure
    return issued


def _renew_batch(account_ids: list[int], at: datetime) -> int:
    """Every monthly period now due on these accounts, in one transaction and a few statements for all of
    them: the accounts locked (in id order, as every batch locks them, so two batches never wait for each
    other both ways), then their due subscriptions; the invoices made and charged together, the accounts
    settled; and last, all of the batch's invoices numbered at once (billing.invoice_numbers), so that the
    year's sequence row, which every issuer shares, is held only from there to the commit. A crash
    anywhere leaves all of it undone; a second run for the same moment finds nothing due. Returns the
    invoices issued."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            # Foreign keys checked as the rows are written, not all at the commit (the sequence row locked).
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        accounts = lock_accounts(account_ids)
        subscriptions = list(
            _due_monthly(at)
            .filter(account_id__in=list(accounts))
            .select_for_update()
            .order_by("account_id", "pk")
        )
        periods = _due_periods(subscriptions, accounts, at)
        if not periods:
            return 0
        _advance(subscriptions)
        numbers = Numbers()
        invoices = issue(periods, at, numbers)
        settle_locked(list(periods), at, issued_only=True, issued=invoices)
        numbers.take()
    return len(invoices)


def _due_periods(
    subscriptions: list[Subscription], accounts: dict, at: datetime
) -> dict[AbstractBaseUser, list[list[Line]]]:
    """The lines of each monthly period due at `at` (one invoice each), by account; each subscription is
    moved on to the last period invoiced (not saved). Their add-ons and plans are read in one query each:
    the questions asked do not grow with the subscriptions."""
    addons = addons_for_renewal(subscriptions)
    plans = Plan.objects.in_bulk({subscription.plan_id for subscription in subscriptions})
    periods: dict[AbstractBaseUser, list[list[Line]]] = {}
    for subscription in subscriptions:
        subscription.plan = plans[subscription.plan_id]  # a few plans for all of them
        account = accounts[subscription.account_id]
        anchor = timezone.localtime(subscription.started_at).day
        while subscription.paid_through <= at:
            start = subscription.paid_through
            end = add_month(timezone.localtime(start), anchor)
            subscription.period_start, subscription.paid_through = start, end
            periods.setdefault(account, []).append(
                [
                    plan_line(subscription, start, end),
                    *renewal_lines(subscription, addons.get(subscription.pk, ()), start, end),
                ]
            )
    return periods


_ADVANCE = f"""
UPDATE "{Subscription._meta.db_table}" s SET period_start = v.period_start, paid_through = v.paid_through
FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS v(id, period_start, paid_through)
WHERE s.id = v.id
"""


def _advance(subscriptions: list[Subscription]) -> None:
    """Write the subscriptions' new periods (they are locked) in one statement (the demo's SQLite: one
    bulk update)."""
    if connection.vendor != "postgresql":
        Subscription.objects.bulk_update(subscriptions, ["period_start", "paid_through"])
        return
    with connection.cursor() as cursor:
        cursor.execute(
            _ADVANCE,
            [
                [subscription.pk for subscription in subscriptions],
                [subscription.period_start for subscription in subscriptions],
                [subscription.paid_through for subscription in subscriptions],
            ],
        )


def invoice_hourly(at: datetime) -> int:
    """At a month's end, invoice each hourly subscription's hours in that month (at most a month's price)."""
    cutoff = month_start(at)
    count = 0
    due = Subscription.objects.filter(cycle=Subscription.Cycle.HOURLY, paid_through__lt=cutoff).filter(
        Q(ended_at__isnull=True) | Q(ended_at__gt=F("paid_through"))
    )
    for subscription_id, account_id in due.values_list("pk", "account_id"):
        with transaction.atomic():
            lock(get_user_model()(pk=account_id))  # the account first, as every billing step locks it
            subscription = Subscription.objects.select_for_update().get(pk=subscription_id)
            start = subscription.paid_through
            end = min(cutoff, subscription.ended_at) if subscription.ended_at else cutoff
            if end <= start:
                continue
            lines = []
            addons = hourly_addons(subscription, start, end)
            segment_month = month_start(start)
            while segment_month < end:
                month_end = add_month(segment_month, 1)
                segment_start, segment_end = max(start, segment_month), min(end, month_end)
                hours = math.ceil((segment_end - segment_start) / HOUR)
                cap = monthly_price(subscription.account, subscription.plan)
                unit = subscription.price
                if hours * unit > cap:  # never more than the monthly price in one month
                    unit, hours = cap, 1
                lines.append(
                    Line(
                        kind=InvoiceLine.Kind.HOURLY,
                        description=Message(
                            gettext_noop("%(plan)s for %(server)s, %(start)s to %(end)s (%(hours)s h)"),
                            {
                                "plan": subscription.plan.name,
                                "server": subscription.label,
                                "start": date_value(segment_start),
                                "end": date_value(segment_end),
                                "hours": math.ceil((segment_end - segment_start) / HOUR),
                            },
                        ),
                        unit_price=unit,
                        quantity=Decimal(hours),
                        subscription=subscription,
                        period_start=segment_start,
                        period_end=segment_end,
                    )
                )
                lines += hourly_lines(subscription, addons, segment_start, segment_end)
                segment_month = month_end
            Subscription.objects.filter(pk=subscription.pk).update(paid_through=end)
            issue_invoice(subscription.account, lines, at)
            count += 1
    return count
