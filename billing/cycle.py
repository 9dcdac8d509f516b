"""The periodic billing run (beat and `manage.py billing_run`): invoice the monthly periods that ended and
the hourly usage of the month that ended, each with the subscription's add-ons (billing.addons), then
remind and dun (billing.dunning). Every step is guarded by state written in the same transaction, so
running it twice for the same moment changes nothing the second time."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_noop

from .addons import addons_for_renewal, hourly_addons, hourly_lines, renewal_lines
from .dunning import dun, remind
from .invoices import Line, issue, issue_invoice, settle
from .ledger import lock
from .models import InvoiceLine, Subscription
from .periods import add_month, month_start
from .prices import monthly_price
from .subscriptions import plan_line
from .texts import Message, date_value

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
    """Invoice each monthly subscription whose paid period has ended, one invoice per period, account by
    account (one transaction each). Returns the number of invoices issued."""
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
    """Renew what is due at `at` on each of these accounts, each in its own transaction (a second run, or a
    batch delivered again, finds nothing due on an account renewed already). Returns the invoices issued."""
    return sum(_renew_account(account_id, at) for account_id in account_ids)


def _renew_account(account_id: int, at: datetime) -> int:
    """Every monthly period now due on one account: the invoices made, numbered, charged and mailed
    together, and the account settled once. A crash anywhere leaves all of it undone (one transaction);
    a second run for the same moment finds nothing due."""
    with transaction.atomic():
        account = lock(get_user_model()(pk=account_id))
        subscriptions = list(
            _due_monthly(at)
            .filter(account_id=account_id)
            .select_for_update(of=("self",))
            .select_related("plan")
            .order_by("pk")
        )
        # The add-ons of all of them in one query: the questions asked do not grow with the subscriptions.
        addons = addons_for_renewal(subscriptions)
        periods: list[list[Line]] = []
        for subscription in subscriptions:
            subscription.account = account
            anchor = timezone.localtime(subscription.started_at).day
            while subscription.paid_through <= at:
                start = subscription.paid_through
                end = add_month(timezone.localtime(start), anchor)
                subscription.period_start, subscription.paid_through = start, end
                periods.append(
                    [
                        plan_line(subscription, start, end),
                        *renewal_lines(subscription, addons.get(subscription.pk, ()), start, end),
                    ]
                )
        if not periods:
            return 0
        _advance(subscriptions)
        invoices = issue(account, periods, at)
        settle(account, at, locked=True, issued_only=True)
    return len(invoices)


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
