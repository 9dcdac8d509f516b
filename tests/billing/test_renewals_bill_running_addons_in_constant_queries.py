"""Each monthly renewal bills the subscription's running add-ons on lines of its invoice, at the price each
started at (a price changed since applies only to new ones); an add-on started while the renewal was late
is billed from its start. The questions the renewal asks Postgres do not grow with the subscriptions or
their add-ons: the add-ons of all of an account's renewed subscriptions are read in one query. A
suspended subscription is renewed with its add-ons, as with its plan."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing import addons, cycle, subscriptions
from billing.models import InvoiceLine, InvoiceSequence, Subscription
from panel.models import User
from tests import factories
from tests.factories import check_books
from tests.factories import local_time as at

pytestmark = pytest.mark.django_db

PRICE = Decimal("31000")


@pytest.fixture(autouse=True)
def rupiah(settings):
    settings.TIME_ZONE = "Asia/Jakarta"
    settings.PANEL_CURRENCY = "IDR"


def _account_with(count: int, addresses_each: int, plan) -> User:
    account = factories.make_user(User.Role.CUSTOMER)
    for index in range(count):
        reference = f"ref-{account.pk}-{index}"
        subscriptions.open_subscription(account, plan, reference, f"s{index}.example.com")
        for number in range(addresses_each):
            address = f"192.0.2.{index * 10 + number}"
            addons.start_addon(reference, "ipv4", address, f"Additional IPv4 address {address}")
    return account


def _renew_queries(account: User) -> int:
    due = timezone.now() + timedelta(days=40)
    with CaptureQueriesContext(connection) as queries:
        issued = cycle.renew(due)
    assert issued == Subscription.objects.filter(account=account).count()
    return len(queries)


def test_renewing_many_subscriptions_with_many_addons_asks_as_many_questions_as_few(admin_user):
    for year in {timezone.localtime().year, timezone.localtime(timezone.now() + timedelta(days=40)).year}:
        InvoiceSequence.objects.get_or_create(year=year)
    addons.set_addon_price("ipv4", PRICE, admin_user)
    plan = factories.make_plan()
    bare, small, big = _account_with(2, 0, plan), _account_with(2, 1, plan), _account_with(12, 3, plan)
    accounts = [bare, small, big]

    def renew_only(account: User) -> int:
        """The queries of renewing one account's subscriptions (the others are paid further ahead)."""
        others = Subscription.objects.exclude(account=account).filter(
            paid_through__lt=timezone.now() + timedelta(days=60)
        )
        kept = list(others.values_list("pk", "paid_through"))
        others.update(paid_through=timezone.now() + timedelta(days=60))
        try:
            return _renew_queries(account)
        finally:
            for pk, paid_through in kept:
                Subscription.objects.filter(pk=pk).update(paid_through=paid_through)

    counts = [renew_only(account) for account in accounts]
    assert counts[0] == counts[1] == counts[2], counts
    # The big account's renewals: twelve invoices, each its plan and its three addresses at their price.
    for subscription in Subscription.objects.filter(account=big):
        lines = InvoiceLine.objects.filter(subscription=subscription, period_start=subscription.period_start)
        assert sorted(line.kind for line in lines) == ["addon", "addon", "addon", "plan"]
        assert {line.amount for line in lines if line.kind == "addon"} == {PRICE}
        assert len({line.invoice_id for line in lines}) == 1
    for account in accounts:
        check_books(account)


@pytest.fixture
def ordered(customer, admin_user):
    """A monthly server ordered on 1 March 10:00 with an address from the start, at 31000 a month."""
    addons.set_addon_price("ipv4", PRICE, admin_user)
    plan = factories.make_plan(price_monthly=Decimal("50000"))
    subscriptions.open_subscription(customer, plan, "srv-1", "web1.example.com", at=at(2026, 3, 1, 10))
    addons.start_addon(
        "srv-1", "ipv4", "192.0.2.10", "Additional IPv4 address 192.0.2.10", at=at(2026, 3, 1, 10)
    )
    return plan


def renewal_lines(start) -> list[tuple[str, Decimal, object, object]]:
    return list(
        InvoiceLine.objects.filter(period_start__gte=start)
        .order_by("id")
        .values_list("kind", "amount", "period_start", "period_end")
    )


def test_an_addon_keeps_its_price_and_one_started_late_is_billed_from_its_start(
    customer, admin_user, ordered
):
    addons.set_addon_price("ipv4", Decimal("40000"), admin_user)  # for add-ons added from now on
    # The period ended on 1 April 10:00; the billing run comes late, on 3 April. Meanwhile a second address
    # was added on 2 April 10:00, after the paid period: nothing could be charged for it then.
    addons.start_addon(
        "srv-1", "ipv4", "192.0.2.11", "Additional IPv4 address 192.0.2.11", at=at(2026, 4, 2, 10)
    )
    assert renewal_lines(at(2026, 4, 1)) == []
    assert cycle.renew(at(2026, 4, 3)) == 1
    # 1 April 10:00 to 1 May 10:00 is 30 days: the old address at its old price, the new one for 29 days
    # at its price (40000 x 29 / 30 = 38666.67, in whole rupiah).
    assert renewal_lines(at(2026, 4, 1)) == [
        ("plan", Decimal("50000"), at(2026, 4, 1, 10), at(2026, 5, 1, 10)),
        ("addon", PRICE, at(2026, 4, 1, 10), at(2026, 5, 1, 10)),
        ("addon", Decimal("38667"), at(2026, 4, 2, 10), at(2026, 5, 1, 10)),
    ]
    assert cycle.renew(at(2026, 4, 3)) == 0
    check_books(customer)


def test_a_suspended_subscription_is_renewed_with_its_addons(customer, ordered):
    Subscription.objects.filter(reference="srv-1").update(status=Subscription.Status.SUSPENDED)
    assert cycle.renew(at(2026, 4, 1, 10)) == 1
    assert [line[0] for line in renewal_lines(at(2026, 4, 1))] == ["plan", "addon"]


def test_a_free_addon_adds_no_line(customer, admin_user):
    plan = factories.make_plan(price_monthly=Decimal("50000"))
    subscriptions.open_subscription(customer, plan, "srv-2", "web2.example.com", at=at(2026, 3, 1, 10))
    addons.start_addon("srv-2", "ipv4", "192.0.2.20", "Additional IPv4 address 192.0.2.20", at=at(2026, 3, 5))
    cycle.renew(at(2026, 4, 1, 10))
    assert [line[0] for line in renewal_lines(at(2026, 4, 1))] == ["plan"]
