"""Backups cost a share of the server's plan's monthly price: the policy answers it for the current plan,
and when the plan changes (in the resize's transaction, after the customer and the server are locked)
the running backup add-on goes on at the new plan's price; with backups off nothing is billed."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction

from billing import addons
from billing.models import SubscriptionAddon
from panel.backups import policies, pricing
from panel.servers import actions
from panel.servers.locks import LockOrder
from tests import factories
from tests.panel.backup_policy_support import give_backup_target

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def rupiah(settings):
    settings.PANEL_CURRENCY = "IDR"


def test_the_backup_price_follows_the_plan(customer, catalog, admin_user):
    give_backup_target(catalog["region"])
    addons.set_backup_share(Decimal("10"), admin_user)
    server = actions.order_server(
        customer, name="web1", plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
    )
    assert policies.price_monthly(server) == Decimal("5000")  # 10% of 50,000
    bigger = factories.make_plan("large", price_monthly=Decimal("120000"), disk_gib=2)
    assert pricing.price_for_plan(bigger) == Decimal("12000")

    def reprice(plan):
        with transaction.atomic():
            locks = LockOrder()
            locks.customer(customer.pk)
            locks.server()
            pricing.reprice(server, plan, locks)

    reprice(bigger)  # backups off: nothing to bill
    assert not SubscriptionAddon.objects.exists()

    policies.update_policy(server, customer, enabled=True, schedule="daily", retention=7)
    reprice(bigger)
    running = SubscriptionAddon.objects.filter(key=pricing.ADDON_KEY).active().get()
    assert (running.kind, running.price) == ("backup", Decimal("12000"))
    assert SubscriptionAddon.objects.count() == 2
    reprice(bigger)  # again: nothing changes
    assert SubscriptionAddon.objects.count() == 2


def test_a_resize_moves_the_backup_price_to_the_new_plan_once_it_succeeded(customer, catalog, admin_user):
    give_backup_target(catalog["region"])
    addons.set_backup_share(Decimal("10"), admin_user)
    with factories.TidySimulatedHost(catalog["host"].uri):
        server = factories.make_real_server(
            customer, plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
        )
        policies.update_policy(server, customer, enabled=True, schedule="weekly", retention=2)
        disk = catalog["plan"].disk_gib
        bigger = factories.make_plan("large", price_monthly=Decimal("120000"), disk_gib=disk)
        resize = actions.resize_server(server, bigger, customer)
        running = SubscriptionAddon.objects.filter(key=pricing.ADDON_KEY).active().get()
        assert running.price == Decimal("5000")  # until the resize has succeeded
        assert factories.run_operation(resize).status == "succeeded"
        running = SubscriptionAddon.objects.filter(key=pricing.ADDON_KEY).active().get()
        assert running.price == Decimal("12000")  # 10% of the new plan's 120,000
