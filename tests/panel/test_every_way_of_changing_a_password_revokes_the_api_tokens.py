"""Whatever changes a password (the account page, the Django admin, `manage.py changepassword`, code that
calls set_password and save) revokes every API token of the account, in the same transaction, and records
the change once."""

import pytest
from django.core.management import call_command
from django.db import transaction

from panel.models import ActivityEvent, ApiToken
from tests import factories

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse 42"
NEW = "another good passphrase 17"
Type = ActivityEvent.Type


def changes(user) -> list[ActivityEvent]:
    return list(ActivityEvent.objects.filter(account=user, type=Type.PASSWORD_CHANGED))


def test_set_password_and_save_revokes_the_tokens(api, customer):
    token_client = api(customer)
    customer.set_password(NEW)
    customer.save()
    assert not ApiToken.objects.filter(user=customer).exists()
    assert token_client.get("/api/v1/account/").status_code == 401
    [change] = changes(customer)
    assert change.actor is None and change.staff_action  # no request: an operator's change
    assert ActivityEvent.objects.filter(account=customer, type=Type.TOKEN_REVOKED).count() == 1


def test_saving_other_fields_or_rehashing_keeps_the_tokens(api, customer):
    api(customer)
    customer.first_name = "Siti"
    customer.save()
    customer.check_password(PASSWORD)
    assert ApiToken.objects.filter(user=customer).count() == 1
    assert changes(customer) == []


def test_a_failed_save_keeps_the_tokens(api, customer):
    api(customer)
    with pytest.raises(RuntimeError), transaction.atomic():
        customer.set_password(NEW)
        customer.save()
        raise RuntimeError("crash after the save")
    assert ApiToken.objects.filter(user=customer).count() == 1
    assert changes(customer) == []


def test_the_django_admin_changing_a_password_revokes_the_tokens(client, api, admin_user, customer):
    api(customer)
    client.force_login(admin_user)
    response = client.post(
        f"/django-admin/panel/user/{customer.pk}/password/",
        {"password1": NEW, "password2": NEW, "usable_password": "true"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    customer.refresh_from_db()
    assert customer.check_password(NEW)
    assert not ApiToken.objects.filter(user=customer).exists()
    [change] = changes(customer)
    assert change.actor == admin_user and change.staff_action
    assert change.text == "An administrator changed the password."


def test_manage_py_changepassword_revokes_the_tokens(api, customer, monkeypatch):
    api(customer)
    answers = iter([NEW, NEW])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))  # what the operator types
    call_command("changepassword", customer.email)
    assert not ApiToken.objects.filter(user=customer).exists()
    assert len(changes(customer)) == 1


def test_the_account_page_records_its_change_once(client, api, customer):
    api(customer)
    client.force_login(customer)
    response = client.post(
        "/accounts/password_change/", {"old_password": PASSWORD, "new_password1": NEW, "new_password2": NEW}
    )
    assert response.status_code == 302
    [change] = changes(customer)
    assert change.actor == customer and change.text == "Changed the password."
    assert ActivityEvent.objects.filter(account=customer, type=Type.TOKEN_REVOKED).count() == 1
    assert not ApiToken.objects.filter(user=customer).exists()


def test_a_new_user_with_a_password_is_no_change(db):
    user = factories.make_user()
    assert changes(user) == []
