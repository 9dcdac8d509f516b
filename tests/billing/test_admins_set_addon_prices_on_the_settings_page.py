"""Admins set the monthly price of an additional IPv4 address in the "Add-on prices" section of the billing
settings page. Bad input gets a form error and changes nothing; other staff see the price but cannot change
it; customers cannot see the page. A new price applies to add-ons started from then on: running ones keep
the price they started at."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import addons, signals, subscriptions
from billing.errors import BillingError
from billing.models import AddonPrice
from tests import factories

pytestmark = pytest.mark.django_db

PAGE = "/staff/billing-settings/"
URL = "/staff/billing-settings/addon-prices/"


@pytest.fixture(autouse=True)
def rupiah(settings):
    settings.PANEL_CURRENCY = "IDR"


@pytest.fixture
def changes():
    """What `signals.addon_price_changed` carried, in order."""
    seen = []

    def receiver(sender, kind, price, previous, by, **kwargs):
        seen.append((kind, price, previous, by))

    signals.addon_price_changed.connect(receiver)
    yield seen
    signals.addon_price_changed.disconnect(receiver)


def test_an_admin_sets_the_price_of_an_additional_address(client, admin_user, changes):
    client.force_login(admin_user)
    page = client.get(PAGE).content.decode()
    assert "Add-on prices" in page and "Additional IPv4 address, per month" in page
    assert 'name="ipv4"' in page and 'value="0"' in page.split('name="ipv4"')[1].split(">")[0]
    response = client.post(URL, {"ipv4": "25000"})
    assert response.status_code == 302 and response["Location"].endswith(
        "/staff/billing-settings/#addon-prices"
    )
    assert addons.addon_price("ipv4") == Decimal("25000")
    row = AddonPrice.objects.get(kind="ipv4")
    assert row.updated_by == admin_user and row.updated_at is not None
    assert changes == [("ipv4", Decimal("25000"), Decimal("0"), admin_user)]
    page = client.get(response["Location"]).content.decode()
    assert (
        "The add-on prices were saved." in page
        and 'value="25000' in page.split('name="ipv4"')[1].split(">")[0]
    )
    # The same price again changes nothing.
    response = client.post(URL, {"ipv4": "25000"}, follow=True)
    assert "Nothing was changed." in response.content.decode()
    assert len(changes) == 1
    # 0 gives it away free.
    client.post(URL, {"ipv4": "0"})
    assert addons.addon_price("ipv4") == 0
    assert changes[-1][1:3] == (Decimal("0"), Decimal("25000"))


@pytest.mark.parametrize(
    "value, error",
    [
        ("-1", "Ensure this value is greater than or equal to 0."),
        ("12500.5", "IDR has no minor unit: give a whole amount."),
        ("", "This field is required."),
        ("lots", "Enter a number."),
        ("12345678901", "Ensure that there are no more than 10 digits before the decimal point."),
    ],
)
def test_bad_input_gets_a_form_error_and_changes_nothing(client, admin_user, changes, value, error):
    addons.set_addon_price("ipv4", Decimal("25000"), admin_user)
    changes.clear()
    client.force_login(admin_user)
    response = client.post(URL, {"ipv4": value})
    page = response.content.decode()
    assert response.status_code == 200
    assert error in page, page
    assert "The add-on prices were not saved" in page and "field--invalid" in page
    assert addons.addon_price("ipv4") == Decimal("25000") and changes == []


def test_in_dollars_a_price_has_at_most_two_decimals(client, admin_user, settings):
    settings.PANEL_CURRENCY = "USD"
    client.force_login(admin_user)
    assert "Give at most 2 decimals." in client.post(URL, {"ipv4": "1.505"}).content.decode()
    client.post(URL, {"ipv4": "1.50"})
    assert addons.addon_price("ipv4") == Decimal("1.50")


def test_staff_who_are_not_admins_see_the_price_but_cannot_change_it(client, staff, admin_user):
    addons.set_addon_price("ipv4", Decimal("25000"), admin_user)
    client.force_login(staff)
    page = client.get(PAGE).content.decode()
    section = page.split('id="addon-prices"')[1]
    assert "Additional IPv4 address, per month" in section and "Rp25,000" in section
    assert "<form" not in section and 'name="ipv4"' not in section
    assert client.post(URL, {"ipv4": "1"}).status_code == 403
    assert addons.addon_price("ipv4") == Decimal("25000")


def test_customers_cannot_see_or_change_the_prices(client, customer):
    client.force_login(customer)
    assert client.get(PAGE).status_code == 403
    assert client.post(URL, {"ipv4": "1"}).status_code == 403
    assert not AddonPrice.objects.exists()


def test_a_new_price_applies_to_addons_started_from_then_on(customer, admin_user):
    plan = factories.make_plan()
    subscriptions.open_subscription(customer, plan, "srv-1", "web1.example.com")
    addons.set_addon_price("ipv4", Decimal("25000"), admin_user)
    first = addons.start_addon("srv-1", "ipv4", "192.0.2.10", "Additional IPv4 address 192.0.2.10")
    addons.set_addon_price("ipv4", Decimal("30000"), admin_user)
    second = addons.start_addon("srv-1", "ipv4", "192.0.2.11", "Additional IPv4 address 192.0.2.11")
    first.refresh_from_db()
    assert (first.price, second.price) == (Decimal("25000"), Decimal("30000"))


def test_the_service_refuses_a_negative_price_or_an_unknown_kind(admin_user):
    with pytest.raises(BillingError):
        addons.set_addon_price("ipv4", Decimal("-5"), admin_user)
    with pytest.raises(ValueError):
        addons.set_addon_price("floppy", Decimal("5"), admin_user)
    assert not AddonPrice.objects.exists()
