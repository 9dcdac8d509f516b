"""Beat's billing run sends the renewals to the workers in batches of accounts: every account with a due
period is in exactly one batch, and a batch delivered twice (a worker lost mid-way) bills no period twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billing import cycle
from billing.models import Invoice, Subscription
from billing.subscriptions import open_subscription
from panel.models import User
from tests import factories

pytestmark = pytest.mark.django_db


def test_batches_cover_each_due_account_once_and_a_redelivered_batch_bills_nothing_more():
    plan = factories.make_plan()
    accounts = [factories.make_user(User.Role.CUSTOMER) for _ in range(5)]
    for account in accounts:
        for index in range(2):
            open_subscription(account, plan, f"ref-{account.pk}-{index}", f"s{index}.example.com")
    at = timezone.now() + timedelta(days=40)
    opened = Invoice.objects.filter(account__in=accounts).count()  # each subscription's first period

    batches = list(cycle.due_account_batches(at, 2))
    assert [len(batch) for batch in batches] == [2, 2, 1]
    assert sorted(pk for batch in batches for pk in batch) == sorted(account.pk for account in accounts)

    issued = [cycle.renew_accounts(batch, at) for batch in batches]
    assert sum(issued) == Subscription.objects.filter(account__in=accounts).count() == 10
    assert cycle.renew_accounts(batches[0], at) == 0  # delivered again
    assert Invoice.objects.filter(account__in=accounts).count() == opened + 10
    assert list(cycle.due_account_batches(at, 2)) == []
