"""Every status a subscription goes through on billing's real paths is a move
billing.subscription_states allows, and every move of the table is one billing makes: opened active;
suspended by dunning after the grace period and active again once paid; ended when its server is deleted,
never created, or terminated by dunning while suspended; an hourly one ended by a plan change and active
again when the resize failed."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings

from billing import dunning, payments, subscription_states, subscriptions
from billing.models import Invoice, Subscription
from billing.subscription_states import Status
from tests import factories
from tests.column_history import ColumnHistory
from tests.factories import check_books
from tests.factories import local_time as at

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def rupiah(settings):
    settings.TIME_ZONE = "Asia/Jakarta"
    settings.PANEL_CURRENCY = "IDR"


def test_every_status_is_in_the_table_and_the_model_uses_the_vocabulary():
    assert set(subscription_states.TRANSITIONS) == set(Status)
    assert {value for value, _label in Subscription._meta.get_field("status").choices} == set(
        subscription_states.TRANSITIONS
    )
    assert Subscription.Status is Status
    assert subscription_states.may_move(Status.SUSPENDED, Status.SUSPENDED)
    assert not subscription_states.may_move(Status.ENDED, Status.SUSPENDED)


def test_subscriptions_move_only_along_the_table_and_make_every_move_of_it(customer, other_customer):
    plan = factories.make_plan("basic", price_monthly=Decimal("150000"), price_hourly=Decimal("250"))
    bigger = factories.make_plan("bigger", price_monthly=Decimal("250000"), price_hourly=Decimal("400"))
    grace = timedelta(days=settings.BILLING_GRACE_DAYS)
    terminate = timedelta(days=settings.BILLING_TERMINATE_DAYS)

    def subscribe(account, moment, cycle=Subscription.Cycle.MONTHLY) -> Subscription:
        reference = str(uuid.uuid4())
        return subscriptions.open_subscription(account, plan, reference, "web", cycle=cycle, at=moment)

    def status(subscription: Subscription) -> str:
        return Subscription.objects.get(pk=subscription.pk).status

    with ColumnHistory(Subscription, "status") as history:
        # Unpaid: suspended after the grace period, active again on payment, ended with its server.
        monthly = subscribe(customer, at(2026, 1, 10, 9))
        due = Invoice.objects.get(account=customer).due_at
        dunning.dun(due + grace)
        assert status(monthly) == Status.SUSPENDED
        payments.record_payment(customer, Decimal("150000"), "BANK-1", at=due + grace + timedelta(hours=1))
        assert status(monthly) == Status.ACTIVE
        subscriptions.end_subscription(monthly.reference, at=due + grace + timedelta(days=1))
        assert status(monthly) == Status.ENDED

        # An hourly plan change ends the subscription and opens another; the failed resize undoes it.
        hourly = subscribe(customer, at(2026, 1, 12, 9), cycle=Subscription.Cycle.HOURLY)
        undo = subscriptions.change_plan(hourly.reference, bigger, at=at(2026, 1, 12, 15))
        assert status(hourly) == Status.ENDED
        subscriptions.undo_plan_change(hourly.reference, undo)
        assert status(hourly) == Status.ACTIVE
        assert not Subscription.objects.filter(pk=undo["opened"]).exists()

        # A server that was never created.
        unused = subscribe(customer, at(2026, 1, 13, 9))
        assert subscriptions.cancel_unused_subscription(unused.reference, at=at(2026, 1, 13, 9, 5))
        assert status(unused) == Status.ENDED

        # Never paid: suspended, then terminated.
        unpaid = subscribe(other_customer, at(2026, 1, 20, 9))
        due = Invoice.objects.get(account=other_customer).due_at
        dunning.dun(due + grace)
        assert status(unpaid) == Status.SUSPENDED
        dunning.dun(due + terminate)
        assert status(unpaid) == Status.ENDED

    for account in (customer, other_customer):
        check_books(account)
    assert set(history.inserted()) == {Status.ACTIVE}, "subscriptions open active"
    assert history.trail(monthly.pk) == ["active", "suspended", "active", "ended"]
    assert history.trail(hourly.pk) == ["active", "ended", "active"]
    assert history.trail(unpaid.pk) == ["active", "suspended", "ended"]
    for old, new in history.moves():
        assert subscription_states.may_move(old, new), f"{old} -> {new}"
    every_move = {(old, new) for old, targets in subscription_states.TRANSITIONS.items() for new in targets}
    assert set(history.moves()) == every_move
