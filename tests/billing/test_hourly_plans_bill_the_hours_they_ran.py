"""Hourly subscriptions are invoiced at the start of the next month: every started hour at the hourly price,
never more than the plan's monthly price in one month; a subscription ended mid-month bills only its hours;
a plan change bills each plan its own hours; and no hour is billed twice. In IDR and in USD."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from billing import cycle, subscriptions
from billing.models import BillingProfile, Invoice, InvoiceLine, Subscription
from tests import factories
from tests.factories import check_books
from tests.factories import local_time as at

pytestmark = pytest.mark.django_db

HOUR = timedelta(hours=1)
PRICES = {
    # (basic monthly, basic hourly, premium monthly, premium hourly)
    "IDR": (Decimal("150000"), Decimal("250"), Decimal("250000"), Decimal("400")),
    "USD": (Decimal("10.00"), Decimal("0.0150"), Decimal("17.50"), Decimal("0.0270")),
}


@pytest.fixture(autouse=True)
def jakarta(settings):
    settings.TIME_ZONE = "Asia/Jakarta"


@pytest.fixture(params=["IDR", "USD"])
def code(request, settings) -> str:
    settings.PANEL_CURRENCY = request.param
    return request.param


@pytest.fixture
def plans(code):
    basic_month, basic_hour, premium_month, premium_hour = PRICES[code]
    basic = factories.make_plan("basic", price_monthly=basic_month, price_hourly=basic_hour)
    premium = factories.make_plan("premium", vcpus=2, price_monthly=premium_month, price_hourly=premium_hour)
    return basic, premium


def amount(code: str, idr: str, usd: str) -> Decimal:
    return Decimal(idr if code == "IDR" else usd)


def hourly_lines(reference: str) -> list[tuple]:
    return list(
        InvoiceLine.objects.filter(subscription__reference=reference)
        .order_by("period_start", "id")
        .values_list("kind", "period_start", "period_end", "quantity", "unit_price", "amount")
    )


def open_hourly(customer, plan, reference: str, moment) -> Subscription:
    subscription = subscriptions.open_subscription(
        customer, plan, reference, reference, cycle="hourly", at=moment
    )
    assert (subscription.cycle, subscription.price, subscription.paid_through) == (
        "hourly", plan.price_hourly, moment
    )  # fmt: skip
    assert not Invoice.objects.filter(account=customer).exists(), "an hourly server is billed afterwards"
    return subscription


def test_the_next_month_bills_every_started_hour_at_the_hourly_price(customer, plans, code):
    basic, _ = plans
    open_hourly(customer, basic, "srv-a", at(2026, 3, 20, 8, 20))
    assert cycle.invoice_hourly(at(2026, 3, 31, 23, 59)) == 0, "the month is not over"
    assert cycle.invoice_hourly(at(2026, 4, 1)) == 1
    # 20 March 08:20 to 1 April 00:00: 11 days 15 h 40 min, so 280 started hours.
    [line] = hourly_lines("srv-a")
    expected = amount(code, "70000", "4.20")  # 280 x 250 IDR; 280 x 0.0150 USD
    assert line == ("hourly", at(2026, 3, 20, 8, 20), at(2026, 4, 1), 280, basic.price_hourly, expected)
    invoice = Invoice.objects.get(account=customer)
    assert (invoice.total, invoice.status, invoice.issued_at, invoice.currency) == (
        expected, "open", at(2026, 4, 1), code
    )  # fmt: skip
    assert check_books(customer) == (-expected, 0)
    assert cycle.invoice_hourly(at(2026, 4, 1)) == 0
    assert cycle.invoice_hourly(at(2026, 4, 20)) == 0


def test_a_month_of_hours_costs_at_most_the_monthly_price(customer, plans, code):
    basic, _ = plans
    open_hourly(customer, basic, "srv-full", at(2026, 3, 1))
    open_hourly(customer, basic, "srv-two-months", at(2026, 2, 20, 14))
    cycle.run(at(2026, 4, 1, 0, 5))
    # All of March: 744 h x 250 = 186000 IDR (744 x 0.0150 = 11.16 USD), capped at the monthly price.
    [full] = hourly_lines("srv-full")
    assert full[1:3] == (at(2026, 3, 1), at(2026, 4, 1))
    assert full[5] == basic.price_monthly
    # The first run after a missed month bills each month on its own line with its own cap.
    february, march = hourly_lines("srv-two-months")
    assert february[1:] == (
        at(2026, 2, 20, 14), at(2026, 3, 1), Decimal(202), basic.price_hourly, amount(code, "50500", "3.03")
    )  # fmt: skip
    assert march[1:3] == (at(2026, 3, 1), at(2026, 4, 1)) and march[5] == basic.price_monthly
    # The cap takes over at the first hour whose price would pass it: IDR 600 x 250 = 150000 is still the
    # hours' price, 601 h are capped; USD 666 x 0.0150 = 9.99, 667 h (10.005) are capped at 10.00.
    most = 600 if code == "IDR" else 666
    open_hourly(factories.make_user(password=None), basic, "srv-most", at(2026, 4, 1) - most * HOUR)
    open_hourly(factories.make_user(password=None), basic, "srv-one-more", at(2026, 4, 1) - (most + 1) * HOUR)
    cycle.run(at(2026, 4, 1, 1))
    [most_line] = hourly_lines("srv-most")
    [capped] = hourly_lines("srv-one-more")
    assert (most_line[3], most_line[5]) == (Decimal(most), amount(code, "150000", "9.99"))
    assert capped[5] == basic.price_monthly
    check_books(customer)


def test_a_subscription_ended_mid_month_bills_only_its_hours(customer, plans, code):
    basic, _ = plans
    open_hourly(customer, basic, "srv-short", at(2026, 3, 5, 10))
    subscriptions.end_subscription("srv-short", at=at(2026, 3, 7, 12, 30))
    assert cycle.invoice_hourly(at(2026, 3, 31)) == 0
    assert cycle.invoice_hourly(at(2026, 4, 1)) == 1
    # 50.5 h ran: 51 started hours; 51 x 0.0150 = 0.765 USD rounds half up to 0.77.
    [line] = hourly_lines("srv-short")
    expected = amount(code, "12750", "0.77")
    assert line[1:] == (at(2026, 3, 5, 10), at(2026, 3, 7, 12, 30), Decimal(51), basic.price_hourly, expected)
    assert cycle.invoice_hourly(at(2026, 5, 1)) == 0
    assert cycle.run(at(2026, 6, 1))["hourly"] == 0
    assert len(hourly_lines("srv-short")) == 1
    assert check_books(customer) == (-expected, 0)


def test_a_plan_change_mid_month_bills_each_plan_its_own_hours(customer, plans, code):
    basic, premium = plans
    first = open_hourly(customer, basic, "srv-resized", at(2026, 3, 10))
    undo = subscriptions.change_plan("srv-resized", premium, at=at(2026, 3, 15, 6, 30))
    assert undo["opened"] != first.pk
    old, new = Subscription.objects.filter(reference="srv-resized").order_by("started_at")
    assert (old.plan, old.status, old.ended_at) == (basic, "ended", at(2026, 3, 15, 6, 30))
    assert (new.plan, new.status, new.price, new.started_at) == (
        premium, "active", premium.price_hourly, at(2026, 3, 15, 6, 30)
    )  # fmt: skip
    assert not Invoice.objects.exists(), "an hourly plan change is not invoiced at once"

    assert cycle.run(at(2026, 4, 1))["hourly"] == 2
    # Basic: 10 March 00:00 - 15 March 06:30 is 5 days 6.5 h = 126.5 h -> 127 hours.
    # Premium: 15 March 06:30 - 1 April 00:00 is 16 days 17.5 h = 401.5 h -> 402 hours.
    lines = hourly_lines("srv-resized")
    assert [line[1:] for line in lines] == [
        (at(2026, 3, 10), at(2026, 3, 15, 6, 30), Decimal(127), basic.price_hourly,
         amount(code, "31750", "1.91")),  # 127 x 250; 127 x 0.0150 = 1.905 -> 1.91
        (at(2026, 3, 15, 6, 30), at(2026, 4, 1), Decimal(402), premium.price_hourly,
         amount(code, "160800", "10.85")),  # 402 x 400; 402 x 0.0270 = 10.854 -> 10.85
    ]  # fmt: skip
    assert {line.subscription_id for line in InvoiceLine.objects.all()} == {old.pk, new.pk}
    march_total = sum((line[5] for line in lines), Decimal(0))
    assert check_books(customer) == (-march_total, 0)

    # April: only the premium subscription runs (720 h, capped at its monthly price); the basic hours of
    # March are not billed again.
    assert cycle.invoice_hourly(at(2026, 5, 1)) == 1
    april = hourly_lines("srv-resized")[2:]
    assert [line[1:3] for line in april] == [(at(2026, 4, 1), at(2026, 5, 1))]
    assert april[0][5] == premium.price_monthly
    assert cycle.invoice_hourly(at(2026, 5, 1)) == 0
    assert len(InvoiceLine.objects.filter(subscription=old)) == 1
    assert check_books(customer) == (-march_total - premium.price_monthly, 0)


def test_a_custom_price_or_a_discount_scales_the_hourly_price_and_the_cap(customer, plans, code):
    basic, _ = plans
    # A custom monthly price of 99000 IDR (6.60 USD) is 66 % of the list price: the hourly price follows.
    BillingProfile.objects.create(
        account=customer, custom_prices={"basic": "99000" if code == "IDR" else "6.60"}
    )
    custom = open_hourly_priced(customer, basic, "srv-custom", at(2026, 3, 1), amount(code, "165", "0.0099"))
    discounted_customer = factories.make_user(password=None)
    BillingProfile.objects.create(account=discounted_customer, discount_percent=Decimal("10"))
    open_hourly_priced(
        discounted_customer, basic, "srv-discount", at(2026, 3, 31, 14), amount(code, "225", "0.0135")
    )
    cycle.invoice_hourly(at(2026, 4, 1))
    # A whole month is capped at the customer's own monthly price; 10 h at the discounted hourly price.
    [capped] = hourly_lines("srv-custom")
    assert capped[5] == amount(code, "99000", "6.60")
    [short] = hourly_lines("srv-discount")
    assert (short[3], short[5]) == (Decimal(10), amount(code, "2250", "0.14"))  # 10 x 0.0135 = 0.135 -> 0.14
    assert custom.price == amount(code, "165", "0.0099")
    check_books(customer)
    check_books(discounted_customer)


def open_hourly_priced(customer, plan, reference: str, moment, hourly: Decimal) -> Subscription:
    subscription = subscriptions.open_subscription(
        customer, plan, reference, reference, cycle="hourly", at=moment
    )
    assert subscription.price == hourly
    return subscription
