"""How long the account's credit lasts at its current charges: the balance divided by what its running
subscriptions and their add-ons cost a day. A monthly subscription costs its price × 12 / 365 a day, an
hourly one its price × 24; suspended and ended ones cost nothing. An estimate for the billing page, not a
promise: invoices are issued when they are due, not day by day."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING

from .addons import ADDON_HOURS_PER_MONTH
from .ledger import balance as balance_of
from .models import Subscription, SubscriptionAddon
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


def addon_daily_cost(addon: SubscriptionAddon) -> Decimal:
    """What a running add-on costs a day while its subscription runs: its monthly price as a monthly
    subscription's, or its hourly price (billing.addons) × 24 on an hourly one."""
    subscription = addon.subscription
    if subscription.status != Subscription.Status.ACTIVE or addon.ended_at is not None:
        return ZERO
    if subscription.cycle == Subscription.Cycle.HOURLY:
        return addon.price / ADDON_HOURS_PER_MONTH * HOURS_PER_DAY
    return addon.price * MONTHS_PER_YEAR / DAYS_PER_YEAR


def daily_charges(subscriptions: Iterable[Subscription], addons: Iterable[SubscriptionAddon] = ()) -> Decimal:
    """What the subscriptions and the add-ons (of those subscriptions) cost together a day, at their
    current prices."""
    return sum((daily_cost(subscription) for subscription in subscriptions), ZERO) + sum(
        (addon_daily_cost(addon) for addon in addons), ZERO
    )


def days_left(
    balance: Decimal, subscriptions: Iterable[Subscription], addons: Iterable[SubscriptionAddon] = ()
) -> int | None:
    """Whole days the balance pays the subscriptions and their add-ons for (0: less than a day); None when
    nothing is charged or the balance is not positive."""
    daily = daily_charges(subscriptions, addons)
    if balance <= 0 or daily <= 0:
        return None
    return int(balance / daily)


def of_account(account: AbstractBaseUser) -> int | None:
    """`days_left` for the account's balance and its running subscriptions and add-ons."""
    running = list(Subscription.objects.filter(account=account, status=Subscription.Status.ACTIVE))
    addons = (
        SubscriptionAddon.objects.filter(subscription__in=running).active().select_related("subscription")
    )
    return days_left(balance_of(account), running, addons)
