"""New-account limits are lifted only once the account's settled payments add up to NEW_ACCOUNT_LIFT_AMOUNT
(unset: the monthly price of the cheapest plan on sale): a top-up of a few cents changes nothing, the
payment that reaches the amount lifts them once and is recorded, and staff can still lift them by hand."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import payments
from panel.accounts import quotas
from panel.models import ActivityEvent

from .. import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def newcomer(db):
    user = factories.make_user()
    user.new_account_limits = True
    user.save()
    return user


def limited(user) -> bool:
    user.refresh_from_db()
    return user.new_account_limits


def test_a_tiny_top_up_does_not_lift_them(newcomer, catalog):
    payments.record_payment(newcomer, Decimal("1"), "tiny")

    assert limited(newcomer)
    assert not ActivityEvent.objects.filter(account=newcomer, type="limits_lifted").exists()


def test_payments_that_reach_the_cheapest_plans_price_lift_them_once(newcomer, catalog):
    factories.make_plan("tiny", price_monthly=Decimal("20000"))
    factories.make_plan("retired", price_monthly=Decimal("1000"), is_active=False)  # not on sale

    payments.record_payment(newcomer, Decimal("15000"), "first")
    assert limited(newcomer)
    payments.record_payment(newcomer, Decimal("5000"), "second")  # 20000 in all
    assert not limited(newcomer)
    payments.record_payment(newcomer, Decimal("5000"), "third")

    event = ActivityEvent.objects.get(account=newcomer, type="limits_lifted")
    assert (event.actor, event.staff_action) == (None, False)
    assert event.data == {"amount": "20000", "currency": "IDR"}


def test_the_amount_is_a_setting(newcomer, catalog, settings):
    settings.NEW_ACCOUNT_LIFT_AMOUNT = Decimal("100000")
    assert quotas.lift_amount() == Decimal("100000")

    payments.record_payment(newcomer, Decimal("50000"), "first")  # a whole month of the plan: not enough
    assert limited(newcomer)
    payments.record_payment(newcomer, Decimal("50000"), "second")
    assert not limited(newcomer)


def test_staff_still_lift_them_by_hand(newcomer, staff, catalog):
    payments.record_payment(newcomer, Decimal("1"), "tiny")

    assert quotas.lift_new_account_limits(newcomer, by=staff)

    assert not limited(newcomer)
    event = ActivityEvent.objects.get(account=newcomer, type="limits_lifted")
    assert (event.actor, event.staff_action) == (staff, True)
