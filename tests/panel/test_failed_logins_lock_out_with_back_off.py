"""Failed logins lock the account (and the client address) out, with a lock-out that doubles each time;
while locked even the right password is refused. Counts live in the real Redis cache."""

import pytest
from django.test import RequestFactory

from panel.accounts import throttling
from panel.accounts.forms import LoginForm
from panel.models import User

pytestmark = pytest.mark.django_db
PASSWORD = "a sturdy passphrase 93"


@pytest.fixture
def clock(monkeypatch):
    """Move the throttles' clock instead of waiting."""
    state = {"now": 1_900_000_000.0}
    monkeypatch.setattr(throttling, "now", lambda: state["now"])

    def advance(seconds: float) -> None:
        state["now"] += seconds

    return advance


@pytest.fixture
def limits(settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    settings.LOGIN_IP_FAILURE_LIMIT = 5
    settings.LOGIN_FAILURE_WINDOW = 900
    settings.LOGIN_LOCKOUT_SECONDS = 60
    settings.LOGIN_LOCKOUT_MAX_SECONDS = 200
    return settings


def attempt(email: str, password: str, ip: str = "192.0.2.10") -> LoginForm:
    request = RequestFactory().post("/accounts/login/", REMOTE_ADDR=ip)
    form = LoginForm(request, data={"username": email, "password": password})
    form.is_valid()
    return form


def test_the_right_password_is_refused_while_locked_and_accepted_after(limits, clock):
    User.objects.create_user("siti@example.com", PASSWORD)
    for _ in range(2):
        form = attempt("siti@example.com", "wrong")
        assert not form.is_valid() and form.throttled_for is None
    form = attempt("siti@example.com", "wrong")
    assert form.throttled_for == 60
    form = attempt("siti@example.com", PASSWORD)
    assert not form.is_valid()
    assert form.throttled_for == 60
    assert "Too many failed logins" in str(form.non_field_errors())
    clock(30)
    assert attempt("siti@example.com", PASSWORD).throttled_for == 30
    clock(31)
    form = attempt("siti@example.com", PASSWORD)
    assert form.is_valid() and form.throttled_for is None
    assert form.get_user().email == "siti@example.com"


def test_each_further_lock_out_doubles_up_to_the_cap(limits, clock):
    limits.LOGIN_IP_FAILURE_LIMIT = 100
    User.objects.create_user("budi@example.com", PASSWORD)
    waits = []
    for _ in range(4):
        for _ in range(3):
            form = attempt("budi@example.com", "wrong")
        waits.append(form.throttled_for)
        clock(form.throttled_for + 1)
    assert waits == [60, 120, 200, 200]


def test_a_successful_login_clears_the_back_off(limits, clock):
    User.objects.create_user("andi@example.com", PASSWORD)
    for _ in range(3):
        attempt("andi@example.com", "wrong")
    clock(61)
    assert attempt("andi@example.com", PASSWORD).is_valid()
    for _ in range(3):
        form = attempt("andi@example.com", "wrong")
    assert form.throttled_for == 60


def test_unknown_accounts_lock_out_the_same_way(limits, clock):
    for _ in range(3):
        form = attempt("nobody@example.com", "wrong")
    assert form.throttled_for == 60


def test_one_address_guessing_many_accounts_is_locked_out(limits, clock):
    User.objects.create_user("dewi@example.com", PASSWORD)
    for number in range(5):
        form = attempt(f"guess{number}@example.com", "wrong", ip="198.51.100.7")
    assert form.throttled_for == 60
    # The address is locked for every account, also with the right password ...
    assert attempt("dewi@example.com", PASSWORD, ip="198.51.100.7").throttled_for == 60
    # ... while the account itself may still log in from elsewhere.
    assert attempt("dewi@example.com", PASSWORD, ip="203.0.113.5").is_valid()


def test_failures_outside_the_window_do_not_add_up(limits, clock):
    User.objects.create_user("rina@example.com", PASSWORD)
    for _ in range(2):
        attempt("rina@example.com", "wrong")
    clock(901)
    form = attempt("rina@example.com", "wrong")
    assert form.throttled_for is None


def test_the_login_page_answers_429_with_retry_after_while_locked(client, limits, clock):
    User.objects.create_user("wati@example.com", PASSWORD)
    for _ in range(3):
        response = client.post("/accounts/login/", {"username": "wati@example.com", "password": "wrong"})
    response = client.post("/accounts/login/", {"username": "wati@example.com", "password": PASSWORD})
    assert response.status_code == 429
    assert response["Retry-After"] == "60"
    assert "Too many failed logins" in response.content.decode()
    clock(61)
    response = client.post("/accounts/login/", {"username": "wati@example.com", "password": PASSWORD})
    assert response.status_code == 302
