"""Under the prepaid order policy an add-on needs credit for what starting it charges: on a monthly server
the rest of its paid period pro rata, otherwise a month of it. The check runs with the customer's row
locked, as the panel calls it, and refuses with a clear message that names both amounts. A free add-on
needs nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction

from billing import addons, payments, subscriptions
from billing.errors import InsufficientCredit
from billing.ledger import lock
from tests import factories
from tests.factories import local_time as at

pytestmark = pytest.mark.django_db

PRICE = Decimal("31000")


@pytest.fixture(autouse=True)
def prepaid(settings):
    settings.TIME_ZONE = "Asia/Jakarta"
    settings.PANEL_CURRENCY = "IDR"
    settings.BILLING_ORDER_POLICY = "prepaid"


@pytest.fixture
def paid_server(customer, admin_user):
    """A monthly server ordered on 1 March 10:00 and paid, with 10000 left on the balance."""
    plan = factories.make_plan(price_monthly=Decimal("50000"))
    payments.record_payment(customer, Decimal("60000"), "TRX-1", by=admin_user, at=at(2026, 3, 1, 9))
    subscriptions.open_subscription(customer, plan, "srv-1", "web1.example.com", at=at(2026, 3, 1, 10))
    return plan


def check(customer, *args, **kwargs) -> None:
    with transaction.atomic():
        lock(customer)
        addons.require_addon_credit(customer, "ipv4", *args, **kwargs)


def test_the_rest_of_the_period_must_be_covered(customer, admin_user, paid_server):
    addons.set_addon_price("ipv4", PRICE, admin_user)
    # 21 March 10:00 to 1 April 10:00: 11 days, 11000; the balance is 10000.
    with pytest.raises(InsufficientCredit) as refused:
        check(customer, "srv-1", at=at(2026, 3, 21, 10))
    assert refused.value.message == (
        "Insufficient credit: an additional IPv4 address costs Rp11,000 for the rest of this billing period "
        "and your balance is Rp10,000."
    )
    check(customer, "srv-1", at=at(2026, 3, 22, 10))  # 10 days: 10000 is enough


def test_without_a_server_or_on_an_hourly_one_a_month_must_be_covered(customer, admin_user, paid_server):
    addons.set_addon_price("ipv4", Decimal("9000"), admin_user)
    check(customer)
    addons.set_addon_price("ipv4", Decimal("12000"), admin_user)
    with pytest.raises(InsufficientCredit) as refused:
        check(customer)
    assert "costs Rp12,000 a month and your balance is Rp10,000" in refused.value.message
    subscriptions.open_subscription(
        customer, paid_server, "srv-h", "h.example.com", cycle="hourly", at=at(2026, 3, 2)
    )
    with pytest.raises(InsufficientCredit):
        check(customer, "srv-h", at=at(2026, 3, 21, 10))


def test_a_free_addon_needs_no_credit(customer):
    factories.make_plan()
    check(customer)  # no price set: free, also with nothing on the balance
