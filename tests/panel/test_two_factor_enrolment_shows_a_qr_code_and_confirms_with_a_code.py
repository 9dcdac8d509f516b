"""Customers may turn on two-factor authentication on the account page: a QR code made by the panel and the
secret, a first code to confirm, ten recovery codes shown once (stored hashed), new codes, and removal
after a code or the password."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from panel.accounts import totp
from tests import factories

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse 42"


def _secret(response) -> str:
    return re.search(r'id="totp-secret"[^>]*>([A-Z2-7 ]+)<', response.content.decode()).group(1)


def _wrong(secret: str) -> str:
    return "000000" if totp.current_code(secret) != "000000" else "111111"


def _codes(response) -> list[str]:
    return re.findall(
        r"<li><code>([a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4})</code></li>", response.content.decode()
    )


def test_the_account_page_offers_two_factor_to_customers(client, customer):
    client.force_login(customer)
    page = client.get("/account/").content.decode()
    assert "Two-factor authentication" in page
    assert 'href="/account/two-factor/"' in page


def test_enrolment_shows_a_qr_code_and_the_secret_and_confirms_with_a_code(client, customer):
    client.force_login(customer)
    response = client.get("/account/two-factor/")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    body = response.content.decode()
    assert "<svg" in body and "<path" in body  # the QR code, inline, made by the panel
    assert "http://" not in body.split("<svg", 1)[1].split("</svg>", 1)[0].replace("http://www.w3.org", "")
    secret = _secret(response)
    device = TOTPDevice.objects.get(user=customer)
    assert not device.confirmed
    assert secret.replace(" ", "") == totp.secret(device)
    # Reloading shows the same secret (the app may have scanned it already).
    assert _secret(client.get("/account/two-factor/")) == secret
    assert TOTPDevice.objects.filter(user=customer).count() == 1

    wrong = client.post("/account/two-factor/", {"code": _wrong(secret)})
    assert wrong.status_code == 200 and "not right" in wrong.content.decode()
    assert not totp.has_totp(customer)

    with factories.moved_clock(timezone.now() + timedelta(seconds=5)):  # past the device's back-off
        response = client.post("/account/two-factor/", {"code": totp.current_code(secret)})
    assert response.status_code == 200
    codes = _codes(response)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert totp.has_totp(customer)
    # Only hashes are stored.
    stored = set(StaticToken.objects.filter(device__user=customer).values_list("token", flat=True))
    assert len(stored) == 10 and not stored & {c.replace("-", "") for c in codes} and not stored & set(codes)
    # This session has shown the second factor: pages answer.
    assert client.get("/servers/").status_code == 200
    account = client.get("/account/").content.decode()
    assert "10 unused recovery codes" in account
    # Set-up again is refused.
    assert client.get("/account/two-factor/").status_code == 302


def test_a_wrong_first_code_counts_against_the_devices_back_off(client, customer):
    client.force_login(customer)
    secret = _secret(client.get("/account/two-factor/"))
    client.post("/account/two-factor/", {"code": _wrong(secret)})
    # Right away, even the right code waits for the back-off (1 s, doubled with each wrong code).
    response = client.post("/account/two-factor/", {"code": totp.current_code(secret)})
    assert "Too many wrong codes" in response.content.decode()
    assert not totp.has_totp(customer)
    assert TOTPDevice.objects.get(user=customer).throttling_failure_count >= 1


def test_new_recovery_codes_replace_the_old_ones(client, customer):
    factories.enrol_totp(customer)
    old = totp.regenerate_recovery_codes(customer, password=PASSWORD)
    client.force_login(customer)
    response = client.post("/account/two-factor/recovery-codes/", {"password": PASSWORD})
    new = _codes(response)
    assert len(new) == 10 and not set(new) & set(old)
    assert totp.verify(customer, old[0]) is None
    with factories.moved_clock(timezone.now() + timedelta(seconds=5)):  # past the back-off
        assert totp.verify(customer, new[0]) is not None


def test_removal_asks_for_a_code_or_the_password(client, customer):
    factories.enrol_totp(customer)
    totp.regenerate_recovery_codes(customer, password=PASSWORD)
    client.force_login(customer)
    assert client.get("/account/two-factor/remove/").status_code == 200
    response = client.post("/account/two-factor/remove/", {"code": "", "password": ""})
    assert "Enter a code or your password" in response.content.decode()
    response = client.post("/account/two-factor/remove/", {"password": "not my password"})
    assert response.status_code == 200 and totp.has_totp(customer)
    response = client.post("/account/two-factor/remove/", {"password": PASSWORD})
    assert response.status_code == 302
    assert not totp.has_totp(customer)
    assert not StaticToken.objects.filter(device__user=customer).exists()


def test_removal_with_a_current_code(client, customer):
    factories.enrol_totp(customer)
    client.force_login(customer)
    response = client.post("/account/two-factor/remove/", {"code": factories.totp_code(customer)})
    assert response.status_code == 302
    assert not totp.has_totp(customer)
