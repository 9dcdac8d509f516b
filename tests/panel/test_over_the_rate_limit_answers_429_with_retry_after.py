"""Sign-ups and password resets per client address, and API requests per user, are limited: over the
limit the page says so with 429 and Retry-After, the API with `code: "throttled"`."""

import pytest
from django.core import mail

from panel.models import User

pytestmark = pytest.mark.django_db
PASSWORD = "a sturdy passphrase 93"


def test_sign_ups_per_address(client, settings):
    settings.SIGNUP_RATE = "2/h"
    for number in range(2):
        data = {"email": f"user{number}@example.com", "password1": PASSWORD, "password2": PASSWORD}
        assert client.post("/accounts/signup/", data).status_code == 302
        client.logout()
    data = {"email": "third@example.com", "password1": PASSWORD, "password2": PASSWORD}
    response = client.post("/accounts/signup/", data)
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 3600
    assert "Too many attempts" in response.content.decode()
    assert not User.objects.filter(email="third@example.com").exists()
    # another address may still sign up
    assert client.post("/accounts/signup/", data, REMOTE_ADDR="192.0.2.44").status_code == 302


def test_password_resets_per_address(client, settings, customer):
    settings.PASSWORD_RESET_RATE = "2/h"
    for _ in range(2):
        assert client.post("/accounts/password_reset/", {"email": customer.email}).status_code == 302
    response = client.post("/accounts/password_reset/", {"email": customer.email})
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "Too many attempts" in response.content.decode()
    assert len(mail.outbox) == 2


def test_api_requests_per_token(api, customer, other_customer, settings):
    settings.API_RATE = "3/min"
    client = api(customer)
    for _ in range(3):
        assert client.get("/api/v1/account/").status_code == 200
    response = client.get("/api/v1/account/")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"
    assert 0 < int(response["Retry-After"]) <= 60
    # the limit is per user
    assert api(other_customer).get("/api/v1/account/").status_code == 200
