"""New recovery codes need a current code or the password, like removal, under the same throttling: a
stolen session alone cannot mint lasting codes."""

import pytest
from django_otp.plugins.otp_static.models import StaticToken

from panel.accounts import totp
from tests import factories

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse 42"


@pytest.fixture
def enrolled(client, customer):
    factories.enrol_totp(customer)
    client.force_login(customer)
    return customer


def test_without_a_code_or_password_no_codes_are_made(client, enrolled):
    assert client.get("/account/two-factor/recovery-codes/").status_code == 200
    response = client.post("/account/two-factor/recovery-codes/", {})
    assert response.status_code == 200
    assert "Enter a code or your password" in response.content.decode()
    response = client.post("/account/two-factor/recovery-codes/", {"password": "not my password"})
    assert response.status_code == 200
    assert not StaticToken.objects.filter(device__user=enrolled).exists()
    with pytest.raises(totp.TwoFactorError):
        totp.regenerate_recovery_codes(enrolled)


def test_the_password_or_a_current_code_makes_them(client, enrolled):
    response = client.post("/account/two-factor/recovery-codes/", {"password": PASSWORD})
    assert response.status_code == 200
    assert StaticToken.objects.filter(device__user=enrolled).count() == 10
    response = client.post("/account/two-factor/recovery-codes/", {"code": factories.totp_code(enrolled)})
    assert response.status_code == 200
    assert StaticToken.objects.filter(device__user=enrolled).count() == 10


def test_wrong_passwords_lock_out_like_removal(client, enrolled, settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    for _ in range(2):
        client.post("/account/two-factor/recovery-codes/", {"password": "wrong"})
    response = client.post("/account/two-factor/recovery-codes/", {"password": PASSWORD})
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert not StaticToken.objects.filter(device__user=enrolled).exists()
