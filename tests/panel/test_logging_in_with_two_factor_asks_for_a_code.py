"""A user with two-factor authentication logs in in two steps: the password, then a code from the app or a
recovery code (each works once). The session counts as logged in only after the code; wrong codes are
limited (back to the password after five) and the device's back-off answers 429."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY

from panel.accounts import totp
from panel.models import User
from tests import factories

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse 42"


@pytest.fixture
def user(db) -> User:
    return factories.make_user(User.Role.CUSTOMER, email="dewi@example.com", totp=True)


def _password_step(client, email="dewi@example.com", **extra):
    return client.post("/accounts/login/", {"username": email, "password": PASSWORD, **extra})


def _later(seconds: int = 5):
    return factories.moved_clock(timezone.now() + timedelta(seconds=seconds))


def _wrong(user) -> str:
    return "000000" if factories.totp_code(user) != "000000" else "111111"


def test_the_password_alone_does_not_log_in(client, user):
    response = _password_step(client, next="/ssh-keys/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/code/?next=%2Fssh-keys%2F"
    # Not logged in yet.
    response = client.get("/servers/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    page = client.get("/accounts/login/code/")
    assert page.status_code == 200 and "dewi@example.com" in page.content.decode()


def test_the_code_completes_the_login(client, user):
    _password_step(client, next="/ssh-keys/")
    response = client.post("/accounts/login/code/", {"code": factories.totp_code(user), "next": "/ssh-keys/"})
    assert response.status_code == 302 and response["Location"] == "/ssh-keys/"
    assert client.session[DEVICE_ID_SESSION_KEY]
    assert client.get("/servers/").status_code == 200


def test_a_user_without_two_factor_logs_in_with_the_password(client, customer):
    response = _password_step(client, email=customer.email)
    assert response.status_code == 302 and response["Location"] == "/servers/"
    assert client.get("/servers/").status_code == 200


def test_a_recovery_code_works_once(client, user):
    codes = totp.regenerate_recovery_codes(user, password=PASSWORD)
    _password_step(client)
    response = client.post("/accounts/login/code/", {"code": codes[3].upper().replace("-", " ")})
    assert response.status_code == 302
    assert client.get("/servers/").status_code == 200
    assert totp.status(user).recovery_codes_left == 9

    client.post("/accounts/logout/")
    _password_step(client)
    response = client.post("/accounts/login/code/", {"code": codes[3]})
    assert response.status_code == 200 and "not right" in response.content.decode()
    assert client.get("/servers/").status_code == 302


def test_a_wrong_code_is_refused_and_the_right_one_then_waits_for_the_back_off(client, user):
    _password_step(client)
    response = client.post("/accounts/login/code/", {"code": _wrong(user)})
    assert response.status_code == 200 and "not right" in response.content.decode()
    response = client.post("/accounts/login/code/", {"code": factories.totp_code(user)})
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert "Too many wrong codes" in response.content.decode()
    with _later():
        response = client.post("/accounts/login/code/", {"code": factories.totp_code(user)})
    assert response.status_code == 302
    assert client.get("/servers/").status_code == 200


def test_five_wrong_codes_send_the_user_back_to_the_password(client, user):
    _password_step(client)
    for attempt in range(5):
        with _later(60 * (attempt + 1)):  # each past the device's back-off
            response = client.post("/accounts/login/code/", {"code": _wrong(user)})
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    with _later(600):
        response = client.post("/accounts/login/code/", {"code": factories.totp_code(user)})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert client.get("/servers/").status_code == 302


def test_the_code_step_expires(client, user, settings):
    _password_step(client)
    with _later(settings.TOTP_LOGIN_PENDING_SECONDS + 1):
        response = client.post("/accounts/login/code/", {"code": factories.totp_code(user)})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert client.get("/servers/").status_code == 302


def test_a_password_change_ends_a_pending_login(client, user):
    _password_step(client)
    user.set_password("a new passphrase 77")
    user.save()
    response = client.post("/accounts/login/code/", {"code": factories.totp_code(user)})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert client.get("/servers/").status_code == 302


def test_the_code_step_without_a_password_step_goes_back_to_the_login(client, user):
    response = client.post("/accounts/login/code/", {"code": factories.totp_code(user)})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert client.get("/servers/").status_code == 302


def test_an_old_session_of_an_enrolled_user_is_asked_for_the_code(client, user):
    # A session logged in with the password only (e.g. from before enrolment).
    assert client.login(username=user.email, password=PASSWORD)
    response = client.get("/ssh-keys/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/code/?next=%2Fssh-keys%2F"
    response = client.post("/accounts/login/code/", {"code": factories.totp_code(user), "next": "/ssh-keys/"})
    assert response.status_code == 302 and response["Location"] == "/ssh-keys/"
    assert client.get("/ssh-keys/").status_code == 200


def test_the_password_step_is_throttled_with_429(client, user):
    for _attempt in range(5):
        client.post("/accounts/login/", {"username": user.email, "password": "wrong"})
    response = _password_step(client)
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "Too many failed logins" in response.content.decode()
