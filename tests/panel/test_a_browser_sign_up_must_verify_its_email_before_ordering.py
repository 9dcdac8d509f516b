"""A browser sign-up makes an unverified account with new-account limits and mails a signed link; until
it is followed, the account cannot order (page and API); the link works once and for a while only."""

import re
import time

import pytest
from django.core import mail, signing
from django.core.management import call_command

from panel.models import ActivityEvent, User

pytestmark = pytest.mark.django_db
PASSWORD = "a sturdy passphrase 93"


@pytest.fixture
def client(client, django_capture_on_commit_callbacks):
    """Mails go out when the transaction commits: run those callbacks after each POST of these
    (transaction-wrapped) tests."""
    original = client.post

    def post(*args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return original(*args, **kwargs)

    client.post = post
    return client


def sign_up(client, email="budi@example.com"):
    response = client.post(
        "/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 302
    return User.objects.get(email=email)


def link_from_mail() -> str:
    return re.search(r"https?://[^/\s]+(/accounts/verify/\S+/)", mail.outbox[-1].body).group(1)


def test_sign_up_is_unverified_limited_and_mails_a_link(client):
    user = sign_up(client)
    assert not user.email_verified and user.new_account_limits
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["budi@example.com"]
    assert ActivityEvent.objects.filter(account=user, type=ActivityEvent.Type.SIGNUP).exists()
    page = client.get("/servers/new/").content.decode()
    assert "Verify your email address to order servers" in page
    assert 'action="/accounts/verify/resend/"' in page


def test_an_unverified_account_cannot_order_through_the_api(client, api, catalog):
    user = sign_up(client)
    response = api(user).post(
        "/api/v1/servers/", {"name": "web1", "plan": "small", "image": "debian-12"}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "email_unverified"


def test_the_link_verifies_once_and_is_recorded(client):
    user = sign_up(client)
    link = link_from_mail()
    response = client.get(link)
    assert response.status_code == 200
    assert "Email address verified" in response.content.decode()
    user.refresh_from_db()
    assert user.email_verified
    assert client.get(link).status_code == 200  # idempotent
    events = ActivityEvent.objects.filter(account=user, type=ActivityEvent.Type.EMAIL_VERIFIED)
    assert events.count() == 1
    assert "Verify your email address" not in client.get("/servers/new/").content.decode()


def test_a_tampered_link_is_refused_with_a_resend_button(client):
    user = sign_up(client)
    link = link_from_mail()
    response = client.get(link.replace("/verify/", "/verify/x"))
    assert response.status_code == 400
    text = response.content.decode()
    assert "not valid" in text and 'action="/accounts/verify/resend/"' in text
    user.refresh_from_db()
    assert not user.email_verified


def test_an_expired_link_is_refused(client, settings, monkeypatch):
    user = sign_up(client)
    link = link_from_mail()
    later = time.time() + settings.EMAIL_VERIFICATION_MAX_AGE + 10
    monkeypatch.setattr(signing.time, "time", lambda: later)
    response = client.get(link)
    assert response.status_code == 400
    assert "expired" in response.content.decode()
    user.refresh_from_db()
    assert not user.email_verified


def test_a_link_for_an_old_address_does_not_verify_a_new_one(client):
    user = sign_up(client)
    link = link_from_mail()
    user.email = "changed@example.com"
    user.save()
    assert client.get(link).status_code == 400
    user.refresh_from_db()
    assert not user.email_verified


def test_resend_mails_a_new_link_and_is_rate_limited(client, settings):
    settings.VERIFICATION_RESEND_RATE = "2/h"
    sign_up(client)
    for _ in range(2):
        response = client.post("/accounts/verify/resend/", {"next": "/servers/new/"})
        assert response.status_code == 302 and response["Location"] == "/servers/new/"
    assert len(mail.outbox) == 3
    response = client.post("/accounts/verify/resend/", {"next": "https://evil.example/"})
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert len(mail.outbox) == 3
    assert client.get("/accounts/verify/resend/").status_code == 405


def test_operator_made_customers_are_verified(capsys):
    call_command("create_customer", "ops@example.com", "--password", PASSWORD)
    user = User.objects.get(email="ops@example.com")
    assert user.email_verified and not user.new_account_limits
