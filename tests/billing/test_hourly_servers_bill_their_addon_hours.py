"""On a server billed by the hour an add-on is charged nothing when it starts: at the month's end its
started hours are invoiced with the plan's, at its monthly price / 672 an hour (as the plans' hourly
prices are set), never more than its monthly price in one month, and no hour twice. A plan change carries
it to the new subscription; a failed resize puts it back."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from billing import addons, cycle, subscriptions
from billing.models import Invoice, InvoiceLine, Subscription, SubscriptionAddon
from tests import factories
from tests.factories import check_books
from tests.factories import local_time as at

pytestmark = pytest.mark.django_db

PRICE = Decimal("13440")  # 20 an hour
ADDRESS = "192.0.2.10"
LABEL = f"Additional IPv4 address {ADDRESS}"


@pytest.fixture(autouse=True)
def rupiah(settings):
    settings.TIME_ZONE = "Asia/Jakarta"
    settings.PANEL_CURRENCY = "IDR"


@pytest.fixture
def hourly(customer, admin_user):
    """A server billed by the hour since 1 March 00:00."""
    addons.set_addon_price("ipv4", PRICE, admin_user)
    plan = factories.make_plan(price_monthly=Decimal("50000"))
    subscriptions.open_subscription(
        customer, plan, "srv-h", "h.example.com", cycle="hourly", at=at(2026, 3, 1)
    )
    return plan


def addon_hours(reference: str = "srv-h") -> list[tuple]:
    return list(
        InvoiceLine.objects.filter(
            subscription__reference=reference,
            kind=InvoiceLine.Kind.HOURLY,
            description__startswith="Additional",
        )
        .order_by("period_start", "id")
        .values_list("period_start", "period_end", "quantity", "unit_price", "amount")
    )


def test_the_started_hours_are_invoiced_at_the_months_end(customer, hourly):
    addons.start_addon("srv-h", "ipv4", ADDRESS, LABEL, at=at(2026, 3, 10))
    addons.end_addon("srv-h", ADDRESS, at=at(2026, 3, 12, 12, 30))
    assert not Invoice.objects.filter(account=customer).exists()
    assert cycle.invoice_hourly(at(2026, 4, 1)) == 1
    # 10 March 00:00 to 12 March 12:30: 60.5 h, so 61 started hours at 13440 / 672 = 20.
    assert addon_hours() == [(at(2026, 3, 10), at(2026, 3, 12, 12, 30), 61, Decimal("20"), Decimal("1220"))]
    [invoice] = Invoice.objects.filter(account=customer)
    assert sorted(line.kind for line in invoice.lines.all()) == [
        "hourly",
        "hourly",
    ]  # the plan's and the address's
    line = invoice.lines.get(description__startswith="Additional")
    assert line.description == f"{LABEL} for h.example.com, 10 Mar 2026 to 12 Mar 2026 (61 h)"
    assert cycle.invoice_hourly(at(2026, 4, 1)) == 0
    assert cycle.invoice_hourly(at(2026, 5, 1)) == 1  # April: the plan's hours only
    assert len(addon_hours()) == 1
    check_books(customer)


def test_a_month_of_hours_costs_at_most_the_monthly_price(customer, hourly):
    subscriptions.open_subscription(
        customer, hourly, "srv-long", "long.example.com", cycle="hourly", at=at(2026, 2, 20, 14)
    )
    addons.start_addon("srv-long", "ipv4", ADDRESS, LABEL, at=at(2026, 2, 20, 14))
    cycle.run(at(2026, 4, 1, 0, 5))
    # February from the 20th 14:00: 202 h x 20; all of March (744 h x 20 = 14880) is capped at 13440.
    assert addon_hours("srv-long") == [
        (at(2026, 2, 20, 14), at(2026, 3, 1), 202, Decimal("20"), Decimal("4040")),
        (at(2026, 3, 1), at(2026, 4, 1), 1, PRICE, PRICE),
    ]
    check_books(customer)


def test_a_plan_change_carries_the_addon_and_a_failed_resize_puts_it_back(customer, hourly):
    premium = factories.make_plan("premium", vcpus=2, price_monthly=Decimal("90000"))
    addons.start_addon("srv-h", "ipv4", ADDRESS, LABEL, at=at(2026, 3, 10))
    undo = subscriptions.change_plan("srv-h", premium, at=at(2026, 3, 15, 6, 30))
    old, new = Subscription.objects.filter(reference="srv-h").order_by("started_at")
    carried = SubscriptionAddon.objects.get(subscription=new)
    assert (carried.key, carried.price, carried.started_at, carried.ended_at) == (
        ADDRESS, PRICE, at(2026, 3, 15, 6, 30), None
    )  # fmt: skip
    assert SubscriptionAddon.objects.get(subscription=old).ended_at == at(2026, 3, 15, 6, 30)
    # Starting it again on the server finds it running on the new subscription: nothing new.
    assert addons.start_addon("srv-h", "ipv4", ADDRESS, LABEL).pk == carried.pk

    subscriptions.undo_plan_change("srv-h", undo)
    assert list(Subscription.objects.filter(reference="srv-h")) == [old]
    assert list(SubscriptionAddon.objects.values_list("subscription_id", "ended_at")) == [(old.pk, None)]


def test_each_subscription_bills_its_own_hours_of_a_carried_addon(customer, hourly):
    premium = factories.make_plan("premium", vcpus=2, price_monthly=Decimal("90000"))
    addons.start_addon("srv-h", "ipv4", ADDRESS, LABEL, at=at(2026, 3, 10))
    subscriptions.change_plan("srv-h", premium, at=at(2026, 3, 15, 6, 30))
    cycle.invoice_hourly(at(2026, 4, 1))
    # 10 March 00:00 to 15 March 06:30: 126.5 h -> 127; 15 March 06:30 to 1 April: 401.5 h -> 402.
    assert [(line[0], line[1], line[2]) for line in addon_hours()] == [
        (at(2026, 3, 10), at(2026, 3, 15, 6, 30), 127),
        (at(2026, 3, 15, 6, 30), at(2026, 4, 1), 402),
    ]
    assert sum(line[4] for line in addon_hours()) == (127 + 402) * Decimal("20")
    check_books(customer)


def test_a_free_addon_adds_no_hours(customer, admin_user, hourly):
    addons.set_addon_price("ipv4", 0, admin_user)
    addons.start_addon("srv-h", "ipv4", ADDRESS, LABEL, at=at(2026, 3, 1) + timedelta(hours=5))
    cycle.invoice_hourly(at(2026, 4, 1))
    assert addon_hours() == []
