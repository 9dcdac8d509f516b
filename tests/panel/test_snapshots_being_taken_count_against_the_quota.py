"""Snapshots still being taken count against the quota: requests on several servers cannot pass one by one
before any has finished."""

from __future__ import annotations

import pytest

from panel.accounts import quotas
from panel.servers import actions

from .. import factories

pytestmark = pytest.mark.django_db


def test_a_pending_snapshot_counts(customer, catalog):
    quotas.set_limits(customer, {"snapshots": 1})
    first = factories.make_server(customer, catalog, name="web1")
    second = factories.make_server(customer, catalog, name="web2")

    actions.snapshot_server(first, "one", customer)  # not taken yet: no worker ran

    with pytest.raises(actions.OverQuota):
        actions.snapshot_server(second, "two", customer)
    assert quotas.usage(customer)["snapshots"] == 1
