"""Admins set the seller's details and the bank account customers pay to on the billing settings page: the
change is saved and on the admins' audit log; bad input gets a form error and changes nothing; staff who
are not admins see the details but cannot change them; customers cannot see the page."""

import pytest

from billing import seller
from billing.models import SellerProfile
from panel.models import ActivityEvent

pytestmark = pytest.mark.django_db

URL = "/staff/billing-settings/"

DETAILS = {
    "legal_name": "PT Contoh Hosting Indonesia",
    "address": "Jl. Sudirman No. 1\r\nJakarta 10220",
    "tax_id": "01.234.567.8-901.000",
    "email": "billing@contoh.co.id",
    "phone": "+62 21 555 0100",
    "bank_name": "Bank Central Asia",
    "account_number": "123-456 7890",
    "account_holder": "PT Contoh Hosting Indonesia",
    "payment_note": "Write the invoice number in the transfer note.",
}


def test_an_admin_saves_the_details_and_the_audit_log_records_it(client, admin_user):
    client.force_login(admin_user)
    page = client.get(URL).content.decode()
    assert 'name="account_number"' in page and 'name="legal_name"' in page
    response = client.post(URL, DETAILS)
    assert response.status_code == 302 and response["Location"].endswith("/staff/billing-settings/#seller")
    profile = SellerProfile.objects.get()
    assert profile.legal_name == "PT Contoh Hosting Indonesia"
    assert profile.address == "Jl. Sudirman No. 1\nJakarta 10220"  # the browser's CRLF kept as LF
    assert (profile.bank_name, profile.account_number) == ("Bank Central Asia", "123-456 7890")
    assert profile.updated_by == admin_user and profile.updated_at is not None
    event = ActivityEvent.objects.get(type=ActivityEvent.Type.SELLER_PROFILE)
    assert (event.actor, event.account, event.staff_action) == (admin_user, None, True)
    assert "account_number='123-456 7890'" in event.text and "legal_name=" in event.text
    page = client.get(response["Location"]).content.decode()
    assert "were saved" in page and 'value="123-456 7890"' in page
    # The same details again change nothing and log nothing.
    client.post(URL, DETAILS)
    assert ActivityEvent.objects.filter(type=ActivityEvent.Type.SELLER_PROFILE).count() == 1
    # Blanking a field is a change too.
    client.post(URL, {**DETAILS, "tax_id": ""})
    assert SellerProfile.objects.get().tax_id == ""
    assert ActivityEvent.objects.filter(type=ActivityEvent.Type.SELLER_PROFILE).count() == 2


def test_a_form_drawn_before_another_admins_save_does_not_undo_it(client, admin_user):
    """Two admins open the settings; the first saves a new account number; the second, saving the form they
    opened before, is told and overwrites nothing."""
    client.force_login(admin_user)
    seller.save_profile(DETAILS, by=admin_user)
    page = client.get(URL).content.decode()
    stale = page.split('name="version" value="')[1].split('"')[0]
    seller.save_profile({**DETAILS, "account_number": "999-000"}, by=admin_user)  # the other admin
    response = client.post(URL, {**DETAILS, "payment_note": "Mine.", "version": stale}, follow=True)
    assert "Another admin changed these details while you were editing them" in response.content.decode()
    assert (SellerProfile.objects.get().account_number, SellerProfile.objects.get().payment_note) == (
        "999-000",
        DETAILS["payment_note"],
    )
    fresh = response.content.decode().split('name="version" value="')[1].split('"')[0]
    client.post(URL, {**DETAILS, "account_number": "999-000", "payment_note": "Mine.", "version": fresh})
    assert SellerProfile.objects.get().payment_note == "Mine."


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("account_number", "1234O567", "Use only digits, spaces and dashes."),
        ("account_number", "123.456.789", "Use only digits, spaces and dashes."),
        ("account_number", "1" * 41, "at most 40 characters"),
        ("account_holder", "", "Give the bank, the account number and the account holder together."),
        ("legal_name", "P" * 201, "at most 200 characters"),
        ("email", "not an email", "Enter a valid email address."),
        ("phone", "call us", "Use only digits, spaces, dashes, brackets and a leading +."),
        ("tax_id", "01<234>", "Use only letters, digits, dots, dashes and slashes."),
        ("address", "\n".join(f"line {n}" for n in range(7)), "at most 6 lines"),
    ],
)
def test_bad_input_gets_a_form_error_and_changes_nothing(client, admin_user, field, value, error):
    seller.save_profile({name: DETAILS[name].replace("\r\n", "\n") for name in seller.FIELDS}, by=admin_user)
    client.force_login(admin_user)
    before = SellerProfile.objects.values().get()
    events = ActivityEvent.objects.count()
    response = client.post(URL, {**DETAILS, field: value})
    page = response.content.decode()
    assert response.status_code == 200
    assert error in page.replace("&#x27;", "'"), page
    assert "were not saved" in page and "field--invalid" in page
    assert SellerProfile.objects.values().get() == before
    assert ActivityEvent.objects.count() == events


def test_staff_who_are_not_admins_see_the_details_but_cannot_change_them(client, staff, admin_user):
    seller.save_profile({name: DETAILS[name] for name in seller.FIELDS}, by=admin_user)
    client.force_login(staff)
    response = client.get(URL)
    page = response.content.decode()
    assert response.status_code == 200
    assert "Bank Central Asia" in page and "123-456 7890" in page and "PT Contoh Hosting Indonesia" in page
    assert "Only admins can change these." in page
    assert 'name="account_number"' not in page and "<form" not in page.split('id="seller"')[1]
    response = client.post(URL, {**DETAILS, "account_number": "999"})
    assert response.status_code == 403
    assert SellerProfile.objects.get().account_number == "123-456 7890"
    assert not ActivityEvent.objects.filter(type=ActivityEvent.Type.SELLER_PROFILE, actor=staff).exists()


def test_customers_cannot_see_or_change_the_details(client, customer):
    client.force_login(customer)
    assert client.get(URL).status_code == 403
    assert client.post(URL, DETAILS).status_code == 403
    assert not SellerProfile.objects.exists()


def test_the_staff_overdue_page_links_to_the_settings(client, staff):
    client.force_login(staff)
    assert 'href="/staff/billing-settings/"' in client.get("/staff/overdue/").content.decode()
