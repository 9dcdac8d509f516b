"""Starting an add-on (an additional IPv4 address) on a monthly server invoices the rest of the paid period
pro rata at once, at the price admins set; starting it again charges nothing more. A kind without a price
is free: nothing is invoiced. An hourly server is charged nothing at once. It runs inside the caller's
transaction after the caller locked the customer, and rolls back with it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction

from billing import addons, payments, subscriptions
from billing.models import Invoice, InvoiceLine, InvoiceSequence, SubscriptionAddon
from panel.models import User
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
def plan():
    return factories.make_plan(price_monthly=Decimal("50000"))


def monthly(customer, plan, reference: str = "srv-1"):
    """A monthly server ordered on 1 March 10:00: its first period runs to 1 April 10:00 (31 days)."""
    return subscriptions.open_subscription(
        customer, plan, reference, "web1.example.com", at=at(2026, 3, 1, 10)
    )


def addon_lines(customer) -> list[InvoiceLine]:
    return list(InvoiceLine.objects.filter(invoice__account=customer, kind=InvoiceLine.Kind.ADDON))


def test_the_rest_of_the_period_is_invoiced_once(customer, admin_user, plan):
    addons.set_addon_price("ipv4", PRICE, admin_user)
    subscription = monthly(customer, plan)
    addon = addons.start_addon("srv-1", "ipv4", ADDRESS, LABEL, at=at(2026, 3, 17, 10))
    assert (addon.subscription_id, addon.kind, addon.key, addon.label, addon.price, addon.ended_at) == (
        subscription.pk, "ipv4", ADDRESS, LABEL, PRICE, None
    )  # fmt: skip
    # 17 March 10:00 to 1 April 10:00 is 15 of the period's 31 days: 15 x 1000.
    [line] = addon_lines(customer)
    assert (line.amount, line.quantity, line.period_start, line.period_end, line.subscription_id) == (
        Decimal("15000"), 1, at(2026, 3, 17, 10), at(2026, 4, 1, 10), subscription.pk
    )  # fmt: skip
    assert line.description == f"{LABEL} for web1.example.com, 17 Mar 2026 to 1 Apr 2026"
    assert line.invoice.total == Decimal("15000") and line.invoice.lines.count() == 1
    # Again (a retry, a second request): the same add-on, nothing charged again.
    again = addons.start_addon("srv-1", "ipv4", ADDRESS, LABEL, at=at(2026, 3, 18, 10))
    assert again.pk == addon.pk
    assert len(addon_lines(customer)) == 1
    assert SubscriptionAddon.objects.count() == 1
    assert check_books(customer) == (-(plan.price_monthly + Decimal("15000")), 0)
    # Another address is another add-on, charged on its own.
    addons.start_addon(
        "srv-1", "ipv4", "192.0.2.11", "Additional IPv4 address 192.0.2.11", at=at(2026, 3, 31, 10)
    )
    assert sorted(line.amount for line in addon_lines(customer)) == [Decimal("1000"), Decimal("15000")]


def test_credit_pays_the_charge_at_once(customer, admin_user, plan):
    addons.set_addon_price("ipv4", PRICE, admin_user)
    monthly(customer, plan)
    payments.record_payment(customer, Decimal("100000"), "TRX-1", by=admin_user, at=at(2026, 3, 2))
    addons.start_addon("srv-1", "ipv4", ADDRESS, LABEL, at=at(2026, 3, 17, 10))
    [line] = addon_lines(customer)
    assert line.invoice.status == Invoice.Status.PAID
    left = Decimal("100000") - plan.price_monthly - Decimal("15000")
    assert check_books(customer) == (left, left)


def test_a_kind_without_a_price_is_free_and_invoices_nothing(customer, plan):
    assert addons.addon_price("ipv4") == 0
    monthly(customer, plan)
    addon = addons.start_addon("srv-1", "ipv4", ADDRESS, LABEL, at=at(2026, 3, 17, 10))
    assert addon.price == 0
    assert addon_lines(customer) == []
    assert Invoice.objects.filter(account=customer).count() == 1  # the plan's first month only


def test_an_hourly_server_is_charged_nothing_at_once(customer, admin_user, plan):
    addons.set_addon_price("ipv4", PRICE, admin_user)
    subscriptions.open_subscription(
        customer, plan, "srv-h", "h.example.com", cycle="hourly", at=at(2026, 3, 1)
    )
    addon = addons.start_addon("srv-h", "ipv4", ADDRESS, LABEL, at=at(2026, 3, 17, 10))
    assert addon.price == PRICE
    assert not Invoice.objects.filter(account=customer).exists()


def test_a_server_without_a_live_subscription_gets_nothing(customer, admin_user, plan):
    addons.set_addon_price("ipv4", PRICE, admin_user)
    assert addons.start_addon("no-such-server", "ipv4", ADDRESS, LABEL) is None
    monthly(customer, plan, "srv-gone")
    subscriptions.end_subscription("srv-gone", at=at(2026, 3, 5))
    assert addons.start_addon("srv-gone", "ipv4", ADDRESS, LABEL, at=at(2026, 3, 6)) is None
    assert not SubscriptionAddon.objects.exists()


def test_it_runs_in_the_callers_transaction_after_the_customer_lock_and_rolls_back_with_it(
    customer, admin_user, plan
):
    addons.set_addon_price("ipv4", PRICE, admin_user)
    monthly(customer, plan)
    numbers = InvoiceSequence.objects.get(year=2026).last

    class Refused(Exception):
        pass

    with pytest.raises(Refused), transaction.atomic():
        # As the panel does (panel.servers.locks): the customer's row first, FOR NO KEY UPDATE.
        User.objects.select_for_update(no_key=True).get(pk=customer.pk)
        addons.start_addon("srv-1", "ipv4", ADDRESS, LABEL, at=at(2026, 3, 17, 10))
        assert len(addon_lines(customer)) == 1
        raise Refused  # something later in the caller's transaction fails
    assert not SubscriptionAddon.objects.exists()
    assert addon_lines(customer) == []
    assert InvoiceSequence.objects.get(year=2026).last == numbers, "no invoice number was used up"
    check_books(customer)


def test_an_unknown_kind_is_refused(customer, plan):
    monthly(customer, plan)
    with pytest.raises(ValueError):
        addons.start_addon("srv-1", "floppy", "a", "A floppy drive")
    assert not SubscriptionAddon.objects.exists()
