"""An address that floats to another server of the same customer is paid once for each day: the rest of the
old server's period already paid and the rest of the new server's period are set against each other, and
only the difference is invoiced on the new server, or credited when it is less (whatever
PRORATE_DOWNGRADE_CREDIT says). Moving again changes nothing; another customer's server is refused."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import addons, cycle, subscriptions
from billing.errors import BillingError
from billing.models import Invoice, InvoiceLine, LedgerEntry, SubscriptionAddon
from tests import factories
from tests.factories import check_books
from tests.factories import local_time as at

pytestmark = pytest.mark.django_db

PRICE = Decimal("31000")  # 1000 a day in a 31-day period
ADDRESS = "192.0.2.10"
LABEL = f"Additional IPv4 address {ADDRESS}"


@pytest.fixture(autouse=True)
def rupiah(settings):
    settings.TIME_ZONE = "Asia/Jakarta"
    settings.PANEL_CURRENCY = "IDR"


@pytest.fixture
def plan(admin_user):
    addons.set_addon_price("ipv4", PRICE, admin_user)
    return factories.make_plan(price_monthly=Decimal("50000"))


def server(customer, plan, reference: str, ordered, cycle: str = "monthly"):
    return subscriptions.open_subscription(
        customer, plan, reference, f"{reference}.example.com", cycle=cycle, at=ordered
    )


def addon_amounts(customer) -> list[tuple[str, Decimal]]:
    lines = InvoiceLine.objects.filter(invoice__account=customer, kind=InvoiceLine.Kind.ADDON).order_by("id")
    return [(line.subscription.reference, line.amount) for line in lines]


def credits(customer) -> list[Decimal]:
    return list(
        LedgerEntry.objects.filter(account=customer, kind=LedgerEntry.Kind.CREDIT).values_list(
            "amount", flat=True
        )
    )


def test_to_a_server_paid_further_ahead_only_the_extra_days_are_invoiced(customer, plan):
    # a: 1 March 10:00 to 1 April 10:00; b: 11 March 10:00 to 11 April 10:00 (both 31 days).
    server(customer, plan, "a", at(2026, 3, 1, 10))
    b = server(customer, plan, "b", at(2026, 3, 11, 10))
    addons.start_addon("a", "ipv4", ADDRESS, LABEL, at=at(2026, 3, 1, 10))
    assert addon_amounts(customer) == [("a", PRICE)]
    moved = addons.move_addon("a", "b", ADDRESS, LABEL, at=at(2026, 3, 21, 10))
    # Paid on a to 1 April (11 days); b runs to 11 April (21 days): the 10 days more are invoiced.
    assert addon_amounts(customer) == [("a", PRICE), ("b", Decimal("10000"))]
    line = InvoiceLine.objects.get(subscription=b, kind=InvoiceLine.Kind.ADDON)
    assert (line.period_start, line.period_end) == (at(2026, 3, 21, 10), at(2026, 4, 11, 10))
    assert line.description == (
        f"{LABEL} moved from a.example.com to b.example.com: 21 Mar 2026 to 11 Apr 2026, "
        "less the part already paid on a.example.com"
    )
    assert credits(customer) == []
    old = SubscriptionAddon.objects.get(subscription__reference="a")
    assert old.ended_at == at(2026, 3, 21, 10)
    assert (moved.subscription_id, moved.price, moved.started_at, moved.ended_at) == (
        b.pk, PRICE, at(2026, 3, 21, 10), None
    )  # fmt: skip
    # Again (a retry): nothing moves or is charged.
    assert addons.move_addon("a", "b", ADDRESS, LABEL, at=at(2026, 3, 22, 10)).pk == moved.pk
    assert len(addon_amounts(customer)) == 2 and SubscriptionAddon.objects.count() == 2
    # The renewals: a's without the address, b's with it for its whole next period.
    cycle.renew(at(2026, 4, 11, 10))
    assert addon_amounts(customer)[2:] == [("b", PRICE)]
    # 1 March to 11 May: a month, the 10 days more, a month; each day paid once.
    assert sum(amount for _reference, amount in addon_amounts(customer)) == Decimal("72000")
    check_books(customer)


def test_to_a_server_paid_less_far_ahead_the_difference_is_credited(customer, plan, settings):
    settings.PRORATE_DOWNGRADE_CREDIT = False  # a move credits what was paid twice all the same
    # c: 21 March 10:00 to 21 April 10:00; d: 6 March 10:00 to 6 April 10:00 (both 31 days).
    server(customer, plan, "c", at(2026, 3, 21, 10))
    server(customer, plan, "d", at(2026, 3, 6, 10))
    addons.start_addon("c", "ipv4", ADDRESS, LABEL, at=at(2026, 3, 21, 10))
    addons.move_addon("c", "d", ADDRESS, LABEL, at=at(2026, 3, 26, 10))
    # Paid on c to 21 April (26 days); d is paid to 6 April (11 days): 15 days are credited.
    assert credits(customer) == [Decimal("15000")]
    assert addon_amounts(customer) == [("c", PRICE)]
    reason = LedgerEntry.objects.get(kind=LedgerEntry.Kind.CREDIT).reason
    moved = f"{LABEL} moved from c.example.com to d.example.com"
    assert reason == f"{moved}: credit for the part already paid on c.example.com"
    cycle.renew(at(2026, 4, 6, 10))
    assert addon_amounts(customer)[1:] == [("d", PRICE)]  # 6 April to 6 May, the month's price
    check_books(customer)


def test_between_servers_with_the_same_billing_day_nothing_is_charged_or_credited(customer, plan):
    server(customer, plan, "e", at(2026, 3, 1, 10))
    server(customer, plan, "f", at(2026, 3, 1, 10))
    addons.start_addon("e", "ipv4", ADDRESS, LABEL, at=at(2026, 3, 2, 10))
    invoices = Invoice.objects.count()
    addons.move_addon("e", "f", ADDRESS, LABEL, at=at(2026, 3, 12, 10))
    assert Invoice.objects.count() == invoices and credits(customer) == []


def test_to_an_hourly_server_the_rest_is_credited_and_its_hours_are_billed(customer, plan):
    server(customer, plan, "g", at(2026, 3, 1, 10))
    server(customer, plan, "h", at(2026, 3, 1), cycle="hourly")
    addons.start_addon("g", "ipv4", ADDRESS, LABEL, at=at(2026, 3, 1, 10))
    addons.move_addon("g", "h", ADDRESS, LABEL, at=at(2026, 3, 21, 10))
    assert credits(customer) == [Decimal("11000")]  # 21 March 10:00 to 1 April 10:00
    cycle.invoice_hourly(at(2026, 4, 1))
    [hours] = InvoiceLine.objects.filter(
        subscription__reference="h", kind=InvoiceLine.Kind.HOURLY, description__startswith="Additional"
    )
    assert (hours.period_start, hours.period_end, hours.quantity) == (
        at(2026, 3, 21, 10),
        at(2026, 4, 1),
        254,
    )
    check_books(customer)


def test_from_a_server_without_it_it_starts_as_a_new_addon(customer, plan):
    server(customer, plan, "i", at(2026, 3, 1, 10))
    server(customer, plan, "j", at(2026, 3, 1, 10))
    addons.move_addon("i", "j", ADDRESS, LABEL, at=at(2026, 3, 17, 10))
    assert addon_amounts(customer) == [("j", Decimal("15000"))]


def test_to_another_customers_server_is_refused_and_changes_nothing(customer, other_customer, plan):
    server(customer, plan, "k", at(2026, 3, 1, 10))
    server(other_customer, plan, "l", at(2026, 3, 1, 10))
    addons.start_addon("k", "ipv4", ADDRESS, LABEL, at=at(2026, 3, 2, 10))
    with pytest.raises(BillingError):
        addons.move_addon("k", "l", ADDRESS, LABEL, at=at(2026, 3, 3, 10))
    assert SubscriptionAddon.objects.get().ended_at is None
    assert not SubscriptionAddon.objects.filter(subscription__reference="l").exists()
