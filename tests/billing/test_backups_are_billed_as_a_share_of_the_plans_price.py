"""Backups are billed with the server's subscription at a share of its plan's monthly list price, which
admins set in percent on the billing settings page (none set: free). The add-on starts at the price the
panel computed, charging the rest of the paid period once; when the server's plan changes it goes on at
the new price from that moment: a higher one invoices the difference for the rest of the period, a lower
one is credited only as plan downgrades are (PRORATE_DOWNGRADE_CREDIT); hourly servers bill each part's
hours."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import addons, subscriptions
from billing.errors import BillingError, InsufficientCredit
from billing.models import AddonPrice, InvoiceLine, LedgerEntry, SubscriptionAddon
from tests import factories
from tests.factories import check_books
from tests.factories import local_time as at

pytestmark = pytest.mark.django_db

PAGE = "/staff/billing-settings/"
URL = "/staff/billing-settings/addon-prices/"


@pytest.fixture(autouse=True)
def rupiah(settings):
    settings.TIME_ZONE = "Asia/Jakarta"
    settings.PANEL_CURRENCY = "IDR"


@pytest.fixture
def plan():
    return factories.make_plan(price_monthly=Decimal("62000"))  # 2000 a day in a 31-day period


def monthly(customer, plan, reference: str = "srv-1"):
    """Ordered on 1 March 10:00: the first period runs to 1 April 10:00 (31 days)."""
    return subscriptions.open_subscription(
        customer, plan, reference, "web1.example.com", at=at(2026, 3, 1, 10)
    )


def addon_lines(customer) -> list[InvoiceLine]:
    return list(
        InvoiceLine.objects.filter(invoice__account=customer, kind=InvoiceLine.Kind.ADDON).order_by("pk")
    )


def test_the_share_is_a_percent_of_the_plans_price_rounded_to_the_currency(admin_user):
    assert addons.backup_share() is None
    assert addons.backup_price(Decimal("62000")) == 0  # no share: free
    addons.set_backup_share(Decimal("12.5"), admin_user)
    assert addons.backup_share() == Decimal("12.5")
    assert addons.backup_price(Decimal("62000")) == Decimal("7750")
    assert addons.backup_price(Decimal("55555")) == Decimal("6944")  # 6944.375
    assert addons.backup_price(Decimal("55556"), share=Decimal("10")) == Decimal("5556")  # 5555.6
    row = AddonPrice.objects.get(kind="backup")
    assert (row.price, row.updated_by) == (0, admin_user)
    for bad in (Decimal("-1"), Decimal("100.01"), Decimal("1.234")):
        with pytest.raises(BillingError):
            addons.set_backup_share(bad, admin_user)
    assert addons.backup_share() == Decimal("12.5")
    addons.set_backup_share(None, admin_user)
    assert addons.backup_price(Decimal("62000")) == 0


def test_the_addon_starts_at_the_price_given_and_follows_the_plan(customer, plan, settings):
    settings.PRORATE_DOWNGRADE_CREDIT = False
    monthly(customer, plan)
    addon = addons.start_addon(
        "srv-1", "backup", "backups", "Backups", at=at(2026, 3, 17, 10), price=Decimal("6200")
    )
    assert (addon.kind, addon.price) == ("backup", Decimal("6200"))
    # 15 of the period's 31 days at 200 a day.
    [line] = addon_lines(customer)
    assert line.amount == Decimal("3000")
    assert line.description == "Backups for web1.example.com, 17 Mar 2026 to 1 Apr 2026"

    # A bigger plan on 22 March: 10 days left at (12400 - 6200) / 31 = 200 a day more.
    new = addons.reprice_addon("srv-1", "backups", Decimal("12400"), at=at(2026, 3, 22, 10))
    assert (new.price, new.started_at, new.ended_at) == (Decimal("12400"), at(2026, 3, 22, 10), None)
    addon.refresh_from_db()
    assert addon.ended_at == at(2026, 3, 22, 10)
    assert [line.amount for line in addon_lines(customer)] == [Decimal("3000"), Decimal("2000")]
    assert addon_lines(customer)[1].description == (
        "Backups for web1.example.com at its new price: 22 Mar 2026 to 1 Apr 2026, less the part already paid"
    )
    # The same price again: nothing.
    assert addons.reprice_addon("srv-1", "backups", Decimal("12400"), at=at(2026, 3, 23, 10)).pk == new.pk
    assert len(addon_lines(customer)) == 2 and SubscriptionAddon.objects.count() == 2

    # Back to the small plan: without downgrade credits nothing is given back.
    addons.reprice_addon("srv-1", "backups", Decimal("6200"), at=at(2026, 3, 27, 10))
    assert not LedgerEntry.objects.filter(account=customer, kind=LedgerEntry.Kind.CREDIT).exists()
    assert SubscriptionAddon.objects.filter(key="backups").active().get().price == Decimal("6200")
    check_books(customer)


def test_a_lower_price_is_credited_as_plan_downgrades_are(customer, plan, settings):
    settings.PRORATE_DOWNGRADE_CREDIT = True
    monthly(customer, plan)
    addons.start_addon(
        "srv-1", "backup", "backups", "Backups", at=at(2026, 3, 17, 10), price=Decimal("12400")
    )
    addons.reprice_addon("srv-1", "backups", Decimal("6200"), at=at(2026, 3, 22, 10))
    [credit] = LedgerEntry.objects.filter(account=customer, kind=LedgerEntry.Kind.CREDIT)
    assert credit.amount == Decimal("2000")  # 10 days at 200 a day less
    check_books(customer)


def test_an_hourly_server_is_charged_nothing_at_once(customer, plan):
    subscriptions.open_subscription(
        customer, plan, "srv-h", "h.example.com", cycle="hourly", at=at(2026, 3, 1)
    )
    addons.start_addon("srv-h", "backup", "backups", "Backups", at=at(2026, 3, 2), price=Decimal("6200"))
    addons.reprice_addon("srv-h", "backups", Decimal("12400"), at=at(2026, 3, 5))
    assert addon_lines(customer) == []
    assert [addon.price for addon in SubscriptionAddon.objects.order_by("started_at")] == [
        Decimal("6200"),
        Decimal("12400"),
    ]


def test_the_prepaid_check_asks_for_the_price_given(customer, plan):
    monthly(customer, plan)
    with pytest.raises(InsufficientCredit) as refused:
        addons.require_addon_credit(
            customer, "backup", "srv-1", at=at(2026, 3, 17, 10), price=Decimal("6200")
        )
    assert refused.value.message.startswith("Insufficient credit: the backup service costs Rp3,000 for the")
    addons.require_addon_credit(customer, "backup", "srv-1", at=at(2026, 3, 17, 10), price=Decimal("0"))


def test_admins_set_the_share_on_the_settings_page(client, admin_user, staff):
    client.force_login(admin_user)
    page = client.get(PAGE).content.decode()
    assert "Backups: percent of the plan&#x27;s monthly price" in page and 'name="backup_share"' in page
    response = client.post(URL, {"ipv4": "0", "backup_share": "15"})
    assert response.status_code == 302
    assert addons.backup_share() == Decimal("15")
    page = client.get(PAGE).content.decode()
    assert 'value="15"' in page.split('name="backup_share"')[1].split(">")[0]
    response = client.post(URL, {"ipv4": "0", "backup_share": "15"}, follow=True)
    assert "Nothing was changed." in response.content.decode()
    for bad in ("150", "-1", "1.234", "lots"):
        response = client.post(URL, {"ipv4": "0", "backup_share": bad})
        assert response.status_code == 200 and "were not saved" in response.content.decode()
    assert addons.backup_share() == Decimal("15")
    # Empty: backups are free.
    client.post(URL, {"ipv4": "0", "backup_share": ""})
    assert addons.backup_share() is None
    # Other staff see it but cannot change it.
    addons.set_backup_share(Decimal("20"), admin_user)
    client.force_login(staff)
    page = client.get(PAGE).content.decode()
    assert "Only admins can change these." in page and "20%" in page
    assert client.post(URL, {"ipv4": "0", "backup_share": "30"}).status_code == 403
    assert addons.backup_share() == Decimal("20")
