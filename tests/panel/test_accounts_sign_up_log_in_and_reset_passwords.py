"""Sign up, log in, log out, change and reset the password."""

import re

import pytest
from django.core import mail

from panel.models import User

pytestmark = pytest.mark.django_db
PASSWORD = "a sturdy passphrase 93"


def test_sign_up_creates_a_customer_and_logs_in(client):
    response = client.post(
        "/accounts/signup/", {"email": "Budi@Example.com", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 302
    user = User.objects.get()
    assert user.email == "budi@example.com"
    assert user.role == User.Role.CUSTOMER
    assert not user.is_staff
    assert client.get("/servers/").status_code == 200


def test_sign_up_refuses_a_taken_email_and_weak_passwords(client, customer):
    response = client.post(
        "/accounts/signup/", {"email": customer.email, "password1": PASSWORD, "password2": PASSWORD}
    )
    assert "exists already" in response.content.decode()
    response = client.post(
        "/accounts/signup/", {"email": "new@example.com", "password1": "123", "password2": "123"}
    )
    assert response.status_code == 200
    assert User.objects.count() == 1


def test_log_in_and_log_out(client):
    User.objects.create_user("siti@example.com", PASSWORD)
    response = client.post("/accounts/login/", {"username": "siti@example.com", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/servers/").status_code == 200
    assert client.post("/accounts/logout/").status_code == 302
    response = client.get("/servers/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_password_change(client):
    user = User.objects.create_user("andi@example.com", PASSWORD)
    client.force_login(user)
    new = "another good passphrase 17"
    response = client.post(
        "/accounts/password_change/", {"old_password": PASSWORD, "new_password1": new, "new_password2": new}
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(new)


def test_password_reset_by_email(client):
    user = User.objects.create_user("rina@example.com", PASSWORD)
    response = client.post("/accounts/password_reset/", {"email": "rina@example.com"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    link = re.search(r"https?://[^/\s]+(/accounts/reset/\S+/)", mail.outbox[0].body).group(1)
    response = client.get(link, follow=True)
    new = "reset passphrase works 55"
    response = client.post(response.redirect_chain[-1][0], {"new_password1": new, "new_password2": new})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(new)
