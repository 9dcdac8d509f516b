"""Admins turn "Add a unique code to each invoice's amount" on and off on the billing settings page: the
switch is saved with the seller's details and on the audit log when it changes; other staff see it but
cannot change it. New invoices get codes only while it is on."""

import re
from decimal import Decimal

import pytest

from billing import invoices, seller
from billing.models import SellerProfile
from panel.models import ActivityEvent

pytestmark = pytest.mark.django_db

URL = "/staff/billing-settings/"
DETAILS = {name: "" for name in seller.FIELDS}
LABEL = "Add a unique code to each invoice&#x27;s amount"
CHECKED = re.compile(r'<input type="checkbox" name="unique_amount_codes"[^>]* checked>')


def events() -> list[str]:
    return [
        event.text
        for event in ActivityEvent.objects.filter(type=ActivityEvent.Type.SELLER_PROFILE).order_by("pk")
    ]


def issue(account):
    line = invoices.Line(kind="manual", description="Setup fee", unit_price=Decimal("150000"))
    return invoices.issue_invoice(account, [line])


def test_an_admin_turns_the_codes_on_and_off(client, admin_user, customer):
    client.force_login(admin_user)
    page = client.get(URL).content.decode()
    assert LABEL in page and 'type="checkbox" name="unique_amount_codes"' in page
    assert not CHECKED.search(page)
    response = client.post(URL, {**DETAILS, "unique_amount_codes": "on"})
    assert response.status_code == 302
    assert SellerProfile.objects.get().unique_amount_codes is True
    assert events() == ["Seller and payment details changed: unique_amount_codes=True."]
    assert issue(customer).unique_code is not None
    page = client.get(URL).content.decode()
    assert CHECKED.search(page)
    # Saving again with the box ticked changes nothing and logs nothing.
    assert (
        "Nothing was changed."
        in client.post(URL, {**DETAILS, "unique_amount_codes": "on"}, follow=True).content.decode()
    )
    assert len(events()) == 1
    # An unticked box (the browser sends nothing) turns it off.
    client.post(URL, DETAILS)
    assert SellerProfile.objects.get().unique_amount_codes is False
    assert events()[-1] == "Seller and payment details changed: unique_amount_codes=False."
    assert issue(customer).unique_code is None


def test_a_change_of_other_details_keeps_the_switch(admin_user):
    seller.save_profile({**DETAILS, "unique_amount_codes": True}, by=admin_user)
    seller.save_profile({**DETAILS, "legal_name": "PT Contoh"}, by=admin_user)  # the switch left out
    profile = SellerProfile.objects.get()
    assert (profile.legal_name, profile.unique_amount_codes) == ("PT Contoh", True)


def test_a_form_error_elsewhere_saves_nothing(client, admin_user):
    client.force_login(admin_user)
    response = client.post(URL, {**DETAILS, "phone": "call us", "unique_amount_codes": "on"})
    assert response.status_code == 200 and "were not saved" in response.content.decode()
    assert not SellerProfile.objects.filter(unique_amount_codes=True).exists()
    assert events() == []


def test_staff_who_are_not_admins_see_the_switch_but_cannot_change_it(client, staff, admin_user):
    seller.save_profile({**DETAILS, "unique_amount_codes": True}, by=admin_user)
    client.force_login(staff)
    page = client.get(URL).content.decode()
    assert "Unique amount codes" in page and "On: each invoice's amount carries a unique code" in page
    assert 'name="unique_amount_codes"' not in page
    assert client.post(URL, DETAILS).status_code == 403
    assert SellerProfile.objects.get().unique_amount_codes is True
