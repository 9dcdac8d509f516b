"""A subscription that ends ends its add-ons at the same moment: a deleted server (nothing of the paid
month credited, for the plan or the add-on), a server that never became usable (what it was charged,
the add-on's charge too, is taken back), and one terminated by dunning. Nothing is billed for them
afterwards."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings

from billing import addons, cycle, dunning, subscriptions
from billing.models import Invoice, InvoiceLine, LedgerEntry, Subscription, SubscriptionAddon
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
def with_address(customer, admin_user):
    """A monthly server ordered on 1 March 10:00 with an address added on 17 March 10:00 (15000)."""
    addons.set_addon_price("ipv4", PRICE, admin_user)
    plan = factories.make_plan(price_monthly=Decimal("50000"))
    subscriptions.open_subscription(customer, plan, "srv-1", "web1.example.com", at=at(2026, 3, 1, 10))
    addons.start_addon("srv-1", "ipv4", ADDRESS, LABEL, at=at(2026, 3, 17, 10))
    return plan


def test_a_deleted_server_ends_its_addons_without_credit(customer, with_address):
    subscriptions.end_subscription("srv-1", at=at(2026, 3, 20, 10))
    assert SubscriptionAddon.objects.get().ended_at == at(2026, 3, 20, 10)
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CREDIT).exists()
    assert cycle.renew(at(2026, 4, 2)) == 0
    assert check_books(customer) == (-(with_address.price_monthly + Decimal("15000")), 0)


def test_a_server_that_never_became_usable_gives_back_the_addons_charge(customer, with_address):
    assert subscriptions.cancel_unused_subscription("srv-1", at=at(2026, 3, 17, 11))
    assert SubscriptionAddon.objects.get().ended_at == at(2026, 3, 17, 11)
    # Both invoices (the first month's and the address's) held only this subscription: voided.
    assert set(Invoice.objects.filter(account=customer).values_list("status", flat=True)) == {"void"}
    assert check_books(customer) == (0, 0)


def test_an_hourly_server_deleted_mid_month_bills_the_addons_hours_to_then(customer, admin_user):
    addons.set_addon_price("ipv4", Decimal("13440"), admin_user)
    plan = factories.make_plan(price_monthly=Decimal("50000"))
    subscriptions.open_subscription(
        customer, plan, "srv-h", "h.example.com", cycle="hourly", at=at(2026, 3, 1)
    )
    addons.start_addon("srv-h", "ipv4", ADDRESS, LABEL, at=at(2026, 3, 2))
    subscriptions.end_subscription("srv-h", at=at(2026, 3, 3))
    cycle.invoice_hourly(at(2026, 4, 1))
    [line] = InvoiceLine.objects.filter(description__startswith="Additional")
    assert (line.period_start, line.period_end, line.quantity) == (at(2026, 3, 2), at(2026, 3, 3), 24)


def test_termination_by_dunning_ends_the_addons(customer, with_address):
    due = Invoice.objects.filter(account=customer).order_by("due_at").first().due_at
    moment = due + timedelta(days=settings.BILLING_TERMINATE_DAYS, hours=1)
    dunning.dun(moment)
    assert Subscription.objects.get().status == Subscription.Status.ENDED
    assert SubscriptionAddon.objects.get().ended_at == moment
