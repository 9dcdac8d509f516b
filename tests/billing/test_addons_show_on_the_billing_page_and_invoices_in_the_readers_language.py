"""The customer's billing page lists each server's running add-ons under it with their monthly price, counts
them in the monthly total and in how long the credit lasts; invoice lines of add-ons keep their message
and values and are shown in the reader's language (the add-on's name inside the line too), the English
text kept in the plain column."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import translation
from django.utils.translation import gettext

from billing import addons, ledger, payments, subscriptions
from billing.models import ADDON_NAMES, InvoiceLine, LedgerEntry, SubscriptionAddon
from panel.models import User
from tests import factories
from tests.factories import local_time as at

pytestmark = pytest.mark.django_db

ADDRESS = "192.0.2.10"
LABEL = f"Additional IPv4 address {ADDRESS}"


@pytest.fixture(autouse=True)
def rupiah(settings):
    settings.TIME_ZONE = "Asia/Jakarta"
    settings.PANEL_CURRENCY = "IDR"


@pytest.fixture
def with_address(customer, admin_user, catalog):
    addons.set_addon_price("ipv4", Decimal("31000"), admin_user)
    server = factories.make_server(customer, catalog, name="web1")
    plan = catalog["plan"]
    subscriptions.open_subscription(customer, plan, str(server.id), "web1", at=at(2026, 11, 28, 10))
    addons.start_addon(str(server.id), "ipv4", ADDRESS, LABEL, at=at(2026, 12, 13, 10))
    return server, plan


def test_the_billing_page_lists_the_addon_under_its_server_and_counts_it(
    client, customer, admin_user, with_address
):
    server, plan = with_address
    payments.record_payment(customer, Decimal("1000000"), "TRX-1", by=admin_user)
    client.force_login(customer)
    page = client.get("/billing/").content.decode()
    costs = page.split('id="costs-title"')[1].split("</section>")[0]
    assert LABEL in costs and "Rp31,000" in costs and "per month" in costs
    monthly = plan.price_monthly + Decimal("31000")
    assert f"Rp{monthly:,.0f}" in costs.split("<tfoot>")[1]
    assert costs.index("web1") < costs.index(LABEL)
    # The credit lasts as long as the server and its address together cost a day.
    days = int(ledger.balance(customer) / (monthly * 12 / 365))
    assert f"Your credit lasts about {days} days" in page
    # An ended add-on is not listed.
    addons.end_addon(str(server.id), ADDRESS)
    assert (
        LABEL
        not in client.get("/billing/").content.decode().split('id="costs-title"')[1].split("</section>")[0]
    )


def test_the_lines_are_stored_as_messages_and_shown_in_the_readers_language(client, customer, with_address):
    User.objects.filter(pk=customer.pk).update(language="id")
    [line] = InvoiceLine.objects.filter(kind=InvoiceLine.Kind.ADDON)
    # 28 November 10:00 to 28 December 10:00: 30 days; 13 to 28 December is 15 of them.
    assert line.amount == Decimal("15500")
    assert line.description == f"{LABEL} for web1, 13 Dec 2026 to 28 Dec 2026"
    assert line.description_data["message"] == "%(addon)s for %(server)s, %(start)s to %(end)s"
    assert line.description_data["values"]["addon"] == {
        "message": "Additional IPv4 address %(key)s",
        "values": {"key": ADDRESS},
    }
    with translation.override("id"):
        name = gettext(ADDON_NAMES["ipv4"]) % {"key": ADDRESS}
        expected = gettext("%(addon)s for %(server)s, %(start)s to %(end)s") % {
            "addon": name,
            "server": "web1",
            "start": "13 Des 2026",
            "end": "28 Des 2026",
        }
        assert line.description_text == expected
        assert SubscriptionAddon.objects.get().name_text == name
    client.force_login(User.objects.get(pk=customer.pk))
    page = client.get(f"/billing/invoices/{line.invoice_id}/").content.decode()
    assert expected in page


def test_a_credit_for_an_ended_addon_is_shown_in_the_readers_language(customer, with_address, settings):
    settings.PRORATE_DOWNGRADE_CREDIT = True
    server, _plan = with_address
    addons.end_addon(str(server.id), ADDRESS, at=at(2026, 12, 18, 10))
    credit = LedgerEntry.objects.get(kind=LedgerEntry.Kind.CREDIT)
    assert credit.amount == Decimal("10333")  # 10 of the 30 days of 31000, in whole rupiah
    assert credit.reason == f"{LABEL} removed from web1: the unused part of the period credited"
    with translation.override("id"):
        assert gettext(ADDON_NAMES["ipv4"]) % {"key": ADDRESS} in credit.reason_text
