"""How long the account's credit lasts at its current charges: the balance divided by what its running
subscriptions cost a day. A monthly subscription costs its price × 12 / 365 a day, an hourly one its price
× 24; suspended and ended ones cost nothing. An estimate for the billing page, not a promise: invoices are
issued when they are due, not day by day."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING

from .ledger import balance as balance_of
from .models import Subscription
from .money import ZERO

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

MONTHS_PER_YEAR = Decimal(12)
DAYS_PER_YEAR = Decimal(365)
HOURS_PER_DAY = Decimal(24)


def daily_cost(subscription: Subscription) -> Decimal:
    """What one subscription costs a day while it runs (0 when it does not run)."""
    if subscription.status != Subscription.Status.ACTIVE:
        return ZERO
    if subscription.cycle == Subscription.Cycle.HOURLY:
        return subscription.price * HOURS_PER_DAY
    return subscription.price * MONTHS_PER_YEAR / DAYS_PER_YEAR


def daily_charges(subscriptions: Iterable[Subscription]) -> Decimal:
    """What the subscriptions cost together a day, at their current prices."""
    return sum((daily_cost(subscription) for subscription in subscriptions), ZERO)


def days_left(balance: Decimal, subscriptions: Iterable[Subscription]) -> int | None:
    """Whole days the balance pays the subscriptions for (0: less than a day); None when nothing is charged
    or the balance is not positive."""
    daily = daily_charges(subscriptions)
    if balance <= 0 or daily <= 0:
        return None
    return int(balance / daily)


def of_account(account: AbstractBaseUser) -> int | None:
    """`days_left` for the account's balance and its running subscriptions."""
    running = Subscription.objects.filter(account=account, status=Subscription.Status.ACTIVE)
    return days_left(balance_of(account), running)
