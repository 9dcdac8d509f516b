"""Changing or resetting the password revokes every API token of the account and ends its other sessions
(a change keeps the session that made it); both are recorded in the activity log."""

import re

import pytest
from django.core import mail
from django.test import Client

from panel.models import ActivityEvent, ApiToken, User

pytestmark = pytest.mark.django_db
PASSWORD = "a sturdy passphrase 93"
NEW = "another good passphrase 17"


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_password_change_revokes_tokens_and_ends_other_sessions(api, customer):
    customer.set_password(PASSWORD)
    customer.save()
    token_client = api(customer)
    assert token_client.get("/api/v1/account/").status_code == 200
    this_browser, other_browser = logged_in(customer), logged_in(customer)

    response = this_browser.post(
        "/accounts/password_change/", {"old_password": PASSWORD, "new_password1": NEW, "new_password2": NEW}
    )
    assert response.status_code == 302
    assert not ApiToken.objects.filter(user=customer).exists()
    assert token_client.get("/api/v1/account/").status_code == 401
    assert this_browser.get("/account/").status_code == 200
    assert other_browser.get("/account/").status_code == 302
    types = set(ActivityEvent.objects.filter(account=customer).values_list("type", flat=True))
    assert {ActivityEvent.Type.PASSWORD_CHANGED, ActivityEvent.Type.TOKEN_REVOKED} <= types


def test_a_wrong_old_password_changes_nothing(api, customer):
    customer.set_password(PASSWORD)
    customer.save()
    api(customer)
    changed = ActivityEvent.objects.filter(type=ActivityEvent.Type.PASSWORD_CHANGED)
    before = changed.count()  # setting the password above was a change too
    response = logged_in(customer).post(
        "/accounts/password_change/", {"old_password": "wrong", "new_password1": NEW, "new_password2": NEW}
    )
    assert response.status_code == 200
    assert ApiToken.objects.filter(user=customer).count() == 1
    assert changed.count() == before


def test_a_password_reset_revokes_tokens_and_ends_every_session(api, customer):
    token_client = api(customer)
    browser = logged_in(customer)
    anonymous = Client()
    assert anonymous.post("/accounts/password_reset/", {"email": customer.email}).status_code == 302
    link = re.search(r"https?://[^/\s]+(/accounts/reset/\S+/)", mail.outbox[0].body).group(1)
    response = anonymous.get(link, follow=True)
    response = anonymous.post(response.redirect_chain[-1][0], {"new_password1": NEW, "new_password2": NEW})
    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.check_password(NEW)
    assert token_client.get("/api/v1/account/").status_code == 401
    assert browser.get("/account/").status_code == 302
    assert ActivityEvent.objects.filter(account=customer, type=ActivityEvent.Type.PASSWORD_RESET).exists()
