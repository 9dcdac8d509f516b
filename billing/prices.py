"""What a customer pays: the list prices of the plans on sale, less the customer's discount or replaced by
their custom prices (the terms staff set here), and what a plan change costs for the rest of a period."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from . import signals
from .errors import BillingError, refuse_own
from .ledger import lock
from .models import BillingProfile, Plan, Subscription
from .money import ZERO, quantize

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

_UNSET = object()


def plans_on_sale() -> QuerySet[Plan]:
    return Plan.objects.filter(is_active=True)


def monthly_price(
    account: AbstractBaseUser, plan: Plan, profile: BillingProfile | None | object = _UNSET
) -> Decimal:
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


def hourly_price(
    account: AbstractBaseUser, plan: Plan, profile: BillingProfile | None | object = _UNSET
) -> Decimal:
    """The hourly price, with the same discount, never more than a month's price an hour."""
    monthly = monthly_price(account, plan, profile)
    ratio = monthly / plan.price_monthly if plan.price_monthly else Decimal(1)
    return min((plan.price_hourly * ratio).quantize(Decimal("0.0001")), monthly)


def first_period_price(account: AbstractBaseUser, plan: Plan) -> Decimal:
    return monthly_price(account, plan)


def cheapest_monthly_price() -> Decimal | None:
    """The list monthly price of the cheapest plan on sale (None when none is on sale)."""
    price = (
        Plan.objects.filter(is_active=True)
        .order_by("price_monthly")
        .values_list("price_monthly", flat=True)
        .first()
    )
    return None if price is None else quantize(price)


def proration(
    subscription: Subscription,
    new_plan: Plan,
    at: datetime | None = None,
    profile: BillingProfile | None | object = _UNSET,
) -> Decimal:
    """What a plan change costs now (positive) or returns (negative) for the rest of the paid period."""
    at = at or timezone.now()
    if subscription.cycle != Subscription.Cycle.MONTHLY or at >= subscription.paid_through:
        return ZERO
    new_price = monthly_price(subscription.account, new_plan, profile)
    return rest_of_period(subscription, new_price - subscription.price, at)


def share(
    monthly: Decimal, start: datetime, end: datetime, period_start: datetime, period_end: datetime
) -> Decimal:
    """The part of a period's price `monthly` that falls on [start, end) of the period [period_start,
    period_end), rounded once to the currency."""
    # Exact: whole microseconds as Decimals (a float ratio would round halves the wrong way).
    tick = timedelta(microseconds=1)
    part = Decimal(max(end - start, timedelta(0)) // tick)
    whole = Decimal((period_end - period_start) // tick)
    return quantize(monthly * part / whole) if whole else ZERO


def rest_of_period(subscription: Subscription, monthly: Decimal, at: datetime) -> Decimal:
    """What `monthly` (a monthly price, or a difference of two) comes to for the rest of a monthly
    subscription's paid period after `at`; 0 for an hourly one, or from the end of the paid period on."""
    if subscription.cycle != Subscription.Cycle.MONTHLY or at >= subscription.paid_through:
        return ZERO
    start = max(at, subscription.period_start)
    return share(
        monthly, start, subscription.paid_through, subscription.period_start, subscription.paid_through
    )


def proration_preview(
    subscription: Subscription, plans: Iterable[Plan], at: datetime | None = None
) -> dict[int, Decimal]:
    """proration() for many plans at once (the resize page), reading the customer's terms once."""
    profile = BillingProfile.objects.filter(account_id=subscription.account_id).first()
    return {plan.pk: proration(subscription, plan, at, profile) for plan in plans}


def set_billing_terms(
    account: AbstractBaseUser,
    discount_percent: Decimal,
    custom_prices: dict[str, Decimal],
    by: AbstractBaseUser | None = None,
) -> BillingProfile:
    """Staff set a customer's discount and custom monthly prices. They apply to new subscriptions and plan
    changes; running subscriptions keep the price they were sold at until they change plan."""
    refuse_own(account, by)
    if not Decimal(0) <= Decimal(discount_percent) <= Decimal(100):
        raise BillingError(_("A discount is between 0 and 100 percent."))
    if any(Decimal(price) < 0 for price in custom_prices.values()):
        raise BillingError(_("A price cannot be negative."))
    with transaction.atomic():
        lock(account)
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
