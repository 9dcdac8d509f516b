"""Ending an add-on stops billing it from that moment. The unused rest of a paid month is credited only
when PRORATE_DOWNGRADE_CREDIT is on, as for a plan downgrade; ending it again changes nothing; the next
renewal leaves it out, and a renewal that ran late bills only the part of the new period it ran."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import addons, cycle, subscriptions
from billing.models import InvoiceLine, LedgerEntry, SubscriptionAddon
from tests import factories
from tests.factories import check_books
from tests.factories import local_time as at

pytestmark = pytest.mark.django_db

PRICE = Decimal("31000")
ADDRESS = "192.0.2.10"
LABEL = f"Additional IPv4 address {ADDRESS}"


@pytest.fixture(autouse=True)
def rupiah(settings):
    settings.TIME_ZONE = "Asia/Jakarta"
    settings.PANEL_CURRENCY = "IDR"


@pytest.fixture
def started(customer, admin_user):
    """A monthly server ordered on 1 March 10:00 (period to 1 April 10:00, 31 days) with an address added
    on 17 March 10:00 (15 days charged: 15000)."""
    plan = factories.make_plan(price_monthly=Decimal("50000"))
    addons.set_addon_price("ipv4", PRICE, admin_user)
    subscriptions.open_subscription(customer, plan, "srv-1", "web1.example.com", at=at(2026, 3, 1, 10))
    addons.start_addon("srv-1", "ipv4", ADDRESS, LABEL, at=at(2026, 3, 17, 10))
    return plan


def credits(customer) -> list[tuple[Decimal, str]]:
    return list(
        LedgerEntry.objects.filter(account=customer, kind=LedgerEntry.Kind.CREDIT).values_list(
            "amount", "reason"
        )
    )


def test_with_downgrade_credit_the_unused_days_are_credited_once(customer, started, settings):
    settings.PRORATE_DOWNGRADE_CREDIT = True
    addons.end_addon("srv-1", ADDRESS, at=at(2026, 3, 27, 10))
    addon = SubscriptionAddon.objects.get()
    assert addon.ended_at == at(2026, 3, 27, 10)
    # 27 March 10:00 to 1 April 10:00: 5 of the 31 days.
    assert credits(customer) == [
        (Decimal("5000"), f"{LABEL} removed from web1.example.com: the unused part of the period credited")
    ]
    addons.end_addon("srv-1", ADDRESS, at=at(2026, 3, 28, 10))
    assert SubscriptionAddon.objects.get().ended_at == at(2026, 3, 27, 10)
    assert len(credits(customer)) == 1
    # The credit waits for an invoice it can pay whole (the open ones are 50000 and 15000).
    assert check_books(customer) == (
        -(started.price_monthly + Decimal("15000") - Decimal("5000")),
        Decimal("5000"),
    )


def test_without_downgrade_credit_nothing_is_credited(customer, started, settings):
    settings.PRORATE_DOWNGRADE_CREDIT = False
    addons.end_addon("srv-1", ADDRESS, at=at(2026, 3, 27, 10))
    assert SubscriptionAddon.objects.get().ended_at == at(2026, 3, 27, 10)
    assert credits(customer) == []
    check_books(customer)


def test_the_next_renewal_leaves_an_ended_addon_out(customer, started):
    addons.end_addon("srv-1", ADDRESS, at=at(2026, 3, 27, 10))
    assert cycle.renew(at(2026, 4, 1, 10)) == 1
    renewal = InvoiceLine.objects.filter(period_start=at(2026, 4, 1, 10))
    assert [line.kind for line in renewal] == [InvoiceLine.Kind.PLAN]
    check_books(customer)


def test_a_late_renewal_bills_the_part_of_the_new_period_it_ran(customer, started, settings):
    """The period ended on 1 April 10:00 but the billing run came only on 5 April; the address was removed
    on 4 April 10:00, after the paid period: nothing to credit, and the renewal bills 1 to 4 April."""
    settings.PRORATE_DOWNGRADE_CREDIT = True
    addons.end_addon("srv-1", ADDRESS, at=at(2026, 4, 4, 10))
    assert credits(customer) == []
    assert cycle.renew(at(2026, 4, 5)) == 1
    [line] = InvoiceLine.objects.filter(kind=InvoiceLine.Kind.ADDON, period_start=at(2026, 4, 1, 10))
    # 3 of the 30 days of 1 April 10:00 to 1 May 10:00.
    assert (line.period_end, line.amount) == (at(2026, 4, 4, 10), Decimal("3100"))
    check_books(customer)


def test_unknown_addons_and_servers_change_nothing(customer, started):
    addons.end_addon("srv-1", "198.51.100.7")
    addons.end_addon("no-such-server", ADDRESS)
    assert SubscriptionAddon.objects.get().ended_at is None
    assert credits(customer) == []
