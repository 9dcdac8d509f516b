"""The client address (activity log, login lock-outs, per-address limits) is REMOTE_ADDR, unless that is
one of TRUSTED_PROXIES: then the right-most X-Forwarded-For entry that is not a trusted proxy. Limits count
IPv6 clients per /64."""

import pytest
from django.test import RequestFactory

from panel.accounts import throttling
from panel.accounts.forms import LoginForm
from panel.activity.log import client_ip
from panel.models import ActivityEvent, User

pytestmark = pytest.mark.django_db
PASSWORD = "a sturdy passphrase 93"


def address(remote: str, forwarded: str | None = None) -> str | None:
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
    return client_ip(RequestFactory().get("/", REMOTE_ADDR=remote, **extra))


def test_a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    assert address("198.51.100.9", "203.0.113.5") == "198.51.100.9"
    settings.TRUSTED_PROXIES = []
    assert address("127.0.0.1", "203.0.113.5") == "127.0.0.1"


def test_through_a_trusted_proxy_the_clients_address_is_used(settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1", "10.0.0.0/8"]
    assert address("127.0.0.1", "203.0.113.5") == "203.0.113.5"
    # what the client wrote itself stands left of what the proxies appended
    assert address("127.0.0.1", "192.0.2.66, 203.0.113.5, 10.1.2.3") == "203.0.113.5"
    assert address("127.0.0.1", "not-an-address, 2001:db8::7, garbage") == "2001:db8::7"
    assert address("127.0.0.1", "") == "127.0.0.1"
    assert address("127.0.0.1", "10.9.9.9") == "127.0.0.1"


def test_a_login_through_the_proxy_records_and_counts_the_client(client, settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    settings.LOGIN_IP_FAILURE_LIMIT = 2
    settings.LOGIN_FAILURE_LIMIT = 100
    User.objects.create_user("siti@example.com", PASSWORD)
    for _ in range(2):
        client.post(
            "/accounts/login/",
            {"username": "siti@example.com", "password": "wrong"},
            REMOTE_ADDR="127.0.0.1",
            HTTP_X_FORWARDED_FOR="203.0.113.5",
        )
    assert throttling.login_locked_for(None, "203.0.113.5")
    # another client behind the same proxy is not locked out
    assert not throttling.login_locked_for(None, "203.0.113.6")
    assert not throttling.login_locked_for(None, "127.0.0.1")
    response = client.post(
        "/accounts/login/",
        {"username": "siti@example.com", "password": PASSWORD},
        REMOTE_ADDR="127.0.0.1",
        HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.6",
    )
    assert response.status_code == 302
    assert ActivityEvent.objects.get(type=ActivityEvent.Type.LOGIN).ip == "203.0.113.6"


def test_two_ipv6_addresses_in_one_64_share_a_login_bucket(settings):
    settings.LOGIN_IP_FAILURE_LIMIT = 2
    settings.LOGIN_FAILURE_LIMIT = 100

    def attempt(ip: str) -> LoginForm:
        request = RequestFactory().post("/accounts/login/", REMOTE_ADDR=ip)
        form = LoginForm(request, data={"username": "nobody@example.com", "password": "wrong"})
        form.is_valid()
        return form

    attempt("2001:db8:1:2::1")
    assert attempt("2001:db8:1:2:ffff::9").throttled_for
    assert attempt("2001:db8:1:2:abcd::5").throttled_for  # any other address in that /64 too
    assert not attempt("2001:db8:1:3::1").throttled_for  # the next /64 is someone else
