"""Logins (with IP address and user agent), failed logins of existing accounts, logouts, two-factor set-up
and removal, new recovery codes and used recovery codes are recorded in the account's activity log."""

import re

import pytest

from panel.accounts import totp
from panel.models import ActivityEvent, User
from tests import factories

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse 42"
BROWSER = {"REMOTE_ADDR": "203.0.113.7", "HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux) Firefox/128.0"}

Type = ActivityEvent.Type


def types(user) -> list[str]:
    return list(
        ActivityEvent.objects.filter(account=user).order_by("at", "id").values_list("type", flat=True)
    )


def test_a_login_and_a_logout_are_recorded_with_address_and_browser(client):
    user = factories.make_user(email="siti@example.com")
    client.post("/accounts/login/", {"username": "siti@example.com", "password": PASSWORD}, **BROWSER)
    client.post("/accounts/logout/", **BROWSER)
    login, logout = ActivityEvent.objects.filter(account=user).order_by("at", "id")
    assert (login.type, logout.type) == (Type.LOGIN, Type.LOGOUT)
    assert login.ip == "203.0.113.7" and "Firefox" in login.user_agent
    assert login.actor == user and logout.ip == "203.0.113.7"


def test_failed_logins_are_recorded_for_existing_accounts_only(client):
    user = factories.make_user(email="budi@example.com")
    client.post("/accounts/login/", {"username": "BUDI@example.com", "password": "wrong"}, **BROWSER)
    client.post("/accounts/login/", {"username": "nobody@example.com", "password": "wrong"}, **BROWSER)
    event = ActivityEvent.objects.get(type=Type.LOGIN_FAILED)
    assert event.account == user and event.actor is None and event.ip == "203.0.113.7"


def test_a_wrong_code_is_a_failed_login_and_the_code_login_is_recorded(client):
    user = factories.make_user(email="dewi@example.com", totp=True)
    client.post("/accounts/login/", {"username": user.email, "password": PASSWORD}, **BROWSER)
    assert types(user) == []  # the password alone is not a login
    wrong = "000000" if factories.totp_code(user) != "000000" else "111111"
    client.post("/accounts/login/code/", {"code": wrong}, **BROWSER)
    codes = totp.regenerate_recovery_codes(user, password=PASSWORD)
    client.post("/accounts/login/code/", {"code": codes[0]}, **BROWSER)
    assert types(user) == [Type.LOGIN_FAILED, Type.RECOVERY_CODES, Type.RECOVERY_CODE_USED, Type.LOGIN]
    login = ActivityEvent.objects.get(account=user, type=Type.LOGIN)
    assert login.ip == "203.0.113.7"
    assert "second factor" in login.text
    used = ActivityEvent.objects.get(account=user, type=Type.RECOVERY_CODE_USED)
    assert "9 left" in used.text


def test_set_up_new_codes_and_removal_are_recorded(client, customer):
    client.force_login(customer)
    page = client.get("/account/two-factor/", **BROWSER).content.decode()
    secret = re.search(r'id="totp-secret"[^>]*>([A-Z2-7 ]+)<', page).group(1)
    client.post("/account/two-factor/", {"code": totp.current_code(secret)}, **BROWSER)
    client.post("/account/two-factor/recovery-codes/", {"password": PASSWORD}, **BROWSER)
    client.post("/account/two-factor/remove/", {"password": PASSWORD}, **BROWSER)
    assert types(customer) == [
        Type.LOGIN,
        Type.TOTP_ENABLED,
        Type.RECOVERY_CODES,
        Type.RECOVERY_CODES,
        Type.TOTP_DISABLED,
    ]
    enabled = ActivityEvent.objects.get(account=customer, type=Type.TOTP_ENABLED)
    assert enabled.ip == "203.0.113.7" and enabled.actor == customer and not enabled.staff_action


def test_staff_two_factor_changes_are_on_the_audit_log_too(client):
    staff = factories.make_user(User.Role.STAFF, totp=False)
    client.force_login(staff)
    secret = totp.secret(totp.pending_device(staff))
    client.post("/account/two-factor/", {"code": totp.current_code(secret)})
    event = ActivityEvent.objects.get(account=staff, type=Type.TOTP_ENABLED)
    assert event.staff_action
