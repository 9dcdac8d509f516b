"""How long the credit lasts (billing.runway): the balance over what the running subscriptions cost a day, a
monthly one its price × 12 / 365, an hourly one its price × 24; suspended and ended ones cost nothing; no
estimate when nothing is charged or nothing is left. The billing summary says it."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import payments, runway, subscriptions
from billing.models import Subscription

pytestmark = pytest.mark.django_db


def subscription(cycle: str, price: str, status: str = "active") -> Subscription:
    """An unsaved subscription: runway reads only its cycle, price and status."""
    now = timezone.now()
    return Subscription(
        cycle=cycle, price=Decimal(price), status=status, currency="IDR",
        started_at=now, period_start=now, paid_through=now + timedelta(days=30),
    )  # fmt: skip


def test_a_monthly_price_costs_twelve_365ths_of_it_a_day():
    assert runway.daily_cost(subscription("monthly", "365000")) == Decimal("12000")
    assert runway.days_left(Decimal("120000"), [subscription("monthly", "365000")]) == 10
    assert runway.days_left(Decimal("119999"), [subscription("monthly", "365000")]) == 9


def test_an_hourly_price_costs_twenty_four_times_it_a_day():
    assert runway.daily_cost(subscription("hourly", "250")) == Decimal("6000")
    # Together with a monthly one: 12,000 + 6,000 a day.
    both = [subscription("monthly", "365000"), subscription("hourly", "250")]
    assert runway.daily_charges(both) == Decimal("18000")
    assert runway.days_left(Decimal("180000"), both) == 10


def test_suspended_and_ended_subscriptions_do_not_run():
    stopped = [subscription("monthly", "365000", "suspended"), subscription("hourly", "250", "ended")]
    assert runway.daily_charges(stopped) == 0
    assert runway.days_left(Decimal("100000"), stopped) is None
    assert runway.days_left(Decimal("120000"), [*stopped, subscription("monthly", "365000")]) == 10


def test_no_estimate_without_credit_or_charges():
    running = [subscription("monthly", "365000")]
    assert runway.days_left(Decimal("0"), running) is None
    assert runway.days_left(Decimal("-5000"), running) is None
    assert runway.days_left(Decimal("100000"), []) is None
    # Less than a day's charges: 0 days.
    assert runway.days_left(Decimal("11999"), running) == 0


def test_the_billing_summary_says_how_long_the_credit_lasts(client, customer, catalog):
    plan = catalog["plan"]
    plan.price_monthly = Decimal("365000")
    plan.save(update_fields=["price_monthly"])
    client.force_login(customer)
    assert "Your credit lasts" not in client.get("/billing/").content.decode()  # nothing charged yet
    subscriptions.open_subscription(customer, plan, "server-1", "web1.example.com")
    payments.record_payment(customer, Decimal("365000") + Decimal("120000"), "BCA-RUNWAY")
    assert runway.of_account(customer) == 10
    page = client.get("/billing/").content.decode()
    assert "Your credit lasts about 10 days at your current charges." in page
    Subscription.objects.filter(account=customer).update(status=Subscription.Status.SUSPENDED)
    assert "Your credit lasts" not in client.get("/billing/").content.decode()
