"""Each account has a language (English or Bahasa Indonesia): chosen at sign-up (the browser's language is
preselected), changed on the account page or with the topbar's language switch, given by operators with
`create_customer --language`. A logged-in user's pages and API answers are in it, whatever the browser
asks for."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from billing.texts import language_of
from panel.models import User
from tests import factories

pytestmark = pytest.mark.django_db
PASSWORD = "a sturdy passphrase 93"


def test_sign_up_preselects_the_browsers_language_and_stores_the_choice(client):
    page = client.get("/accounts/signup/", HTTP_ACCEPT_LANGUAGE="id").content.decode()
    assert '<option value="id" selected>' in page
    page = client.get("/accounts/signup/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<option value="en" selected>' in page
    data = {"email": "siti@example.com", "password1": PASSWORD, "password2": PASSWORD, "language": "id"}
    assert client.post("/accounts/signup/", data, HTTP_ACCEPT_LANGUAGE="en").status_code == 302
    assert User.objects.get(email="siti@example.com").language == "id"


def test_a_sign_up_without_a_choice_takes_the_browsers_language(client):
    data = {"email": "budi@example.com", "password1": PASSWORD, "password2": PASSWORD}
    assert client.post("/accounts/signup/", data, HTTP_ACCEPT_LANGUAGE="id").status_code == 302
    assert User.objects.get(email="budi@example.com").language == "id"


def test_the_account_page_changes_the_language(client, customer):
    assert customer.language == "en"
    client.force_login(customer)
    page = client.get("/account/").content.decode()
    assert 'action="/account/language/"' in page and '<option value="en" selected>' in page
    response = client.post("/account/language/", {"language": "id"})
    assert response.status_code == 302 and response["Location"] == "/account/"
    customer.refresh_from_db()
    assert customer.language == "id"
    page = client.get("/account/", HTTP_ACCEPT_LANGUAGE="en")
    assert page["Content-Language"] == "id" and '<html lang="id">' in page.content.decode()
    assert '<option value="id" selected>' in page.content.decode()


def test_the_account_page_refuses_a_language_the_panel_lacks(client, customer):
    client.force_login(customer)
    client.post("/account/language/", {"language": "xx"})
    customer.refresh_from_db()
    assert customer.language == "en"


def test_the_language_switch_saves_the_choice_to_the_account(client, customer):
    client.force_login(customer)
    response = client.post("/i18n/setlang/", {"language": "id", "next": "/servers/"})
    assert response.status_code == 302 and response["Location"] == "/servers/"
    customer.refresh_from_db()
    assert customer.language == "id"
    assert client.get("/servers/", HTTP_ACCEPT_LANGUAGE="en")["Content-Language"] == "id"
    client.post("/i18n/setlang/", {"language": "en", "next": "/servers/"})
    customer.refresh_from_db()
    assert customer.language == "en"


def test_the_language_switch_still_works_for_visitors(client):
    response = client.post("/i18n/setlang/", {"language": "id", "next": "/accounts/login/"})
    assert response.status_code == 302
    assert client.get("/accounts/login/")["Content-Language"] == "id"


def test_pages_follow_the_account_not_the_browser(client, customer):
    User.objects.filter(pk=customer.pk).update(language="id")
    client.force_login(customer)
    response = client.get("/servers/", HTTP_ACCEPT_LANGUAGE="en")
    assert response["Content-Language"] == "id"
    assert '<html lang="id">' in response.content.decode()


def test_the_api_tells_and_answers_in_the_accounts_language(api, customer):
    User.objects.filter(pk=customer.pk).update(language="id")
    response = api(customer).get("/api/v1/account/", HTTP_ACCEPT_LANGUAGE="en")
    assert response.json()["language"] == "id"
    assert response["Content-Language"] == "id"
    english = factories.make_user()
    response = api(english).get("/api/v1/account/", HTTP_ACCEPT_LANGUAGE="id")
    assert response.json()["language"] == "en" and response["Content-Language"] == "en"


def test_create_customer_leaves_the_language_to_the_first_login_unless_told(settings):
    """Without --language the account reads in its browser's language from its first visit (recorded then);
    until then its mails are in the installation's default language."""
    call_command("create_customer", "ops@example.com", "--password", PASSWORD, stdout=io.StringIO())
    ops = User.objects.get(email="ops@example.com")
    assert ops.language == ""
    assert language_of(ops) == settings.LANGUAGE_CODE == "en"
    call_command(
        "create_customer",
        "dewi@example.com",
        "--password",
        PASSWORD,
        "--language",
        "id",
        stdout=io.StringIO(),
    )
    assert User.objects.get(email="dewi@example.com").language == "id"


def test_an_account_from_before_languages_keeps_its_browsers_language_and_records_it(client):
    """Accounts made before accounts had a language are blank: they are not switched to English, they read
    the panel as their browser asks, and that language is recorded for their mails on the next visit."""
    old = factories.make_user(email="lama@example.com", language="")
    client.force_login(old)
    page = client.get("/servers/", HTTP_ACCEPT_LANGUAGE="id")
    assert page["Content-Language"] == "id"
    old.refresh_from_db()
    assert old.language == "id"
    # Recorded once: a later visit from an English browser does not change the account's choice.
    client.get("/servers/", HTTP_ACCEPT_LANGUAGE="en")
    old.refresh_from_db()
    assert old.language == "id"
