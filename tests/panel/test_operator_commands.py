"""The operator commands of api-v1.md: seed_demo, create_customer, api_token and add_host."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from billing.models import Plan
from hypervisor.models import Host, Image, Region
from panel.models import ApiToken, User
from tests import factories

pytestmark = pytest.mark.django_db

ACCOUNT_LINE = re.compile(r"^\s+(?P<role>\w+)\s+(?P<email>\S+@\S+)\s+(?P<password>\S+)\s*$")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def run(*args, **options) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def printed_accounts(output: str) -> dict[str, tuple[str, str]]:
    """email -> (role, password) from seed_demo's account table."""
    accounts = {}
    for line in output.splitlines():
        match = ACCOUNT_LINE.match(line)
        if match:
            accounts[match["email"]] = (match["role"], match["password"])
    return accounts


def counts() -> dict[str, int]:
    return {
        "regions": Region.objects.count(),
        "plans": Plan.objects.count(),
        "images": Image.objects.count(),
        "users": User.objects.count(),
        "hosts": Host.objects.count(),
    }


def bearer_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


# seed_demo


def test_seed_demo_is_idempotent_and_prints_the_same_passwords():
    first = run("seed_demo", "--host-uri", "test:///default")
    after_first = counts()
    second = run("seed_demo", "--host-uri", "test:///default")

    assert counts() == after_first
    assert after_first == {"regions": 1, "plans": 4, "images": 3, "users": 3, "hosts": 1}
    accounts = printed_accounts(first)
    assert set(accounts) == {"admin@demo.local", "staff@demo.local", "customer@demo.local"}
    assert printed_accounts(second) == accounts
    host = Host.objects.get(name="demo-host")
    assert host.uri == "test:///default"
    assert host.state == Host.State.READY, host.status_reason
    assert "demo-host: test:///default (ready)" in second


def test_seed_demo_passwords_authenticate_with_the_printed_roles():
    accounts = printed_accounts(run("seed_demo", "--host-uri", "test:///default"))
    assert len(accounts) == 3
    for email, (role, password) in accounts.items():
        user = User.objects.get(email=email)
        assert user.role == role
        assert user.check_password(password), email
        assert not user.check_password(password + "x")


def test_seed_demo_restores_a_changed_demo_password():
    accounts = printed_accounts(run("seed_demo", "--host-uri", "test:///default"))
    customer = User.objects.get(email="customer@demo.local")
    customer.set_password("changed by someone")
    customer.save()
    run("seed_demo", "--host-uri", "test:///default")
    customer.refresh_from_db()
    assert customer.check_password(accounts["customer@demo.local"][1])


def test_the_seeded_demo_can_hold_a_server():
    run("seed_demo", "--host-uri", "test:///default")
    host = Host.objects.get(name="demo-host")
    smallest = Plan.objects.order_by("memory_mib").first()
    assert host.schedulable
    assert host.capacity["memory_mib"] >= smallest.memory_mib


# create_customer


@pytest.mark.parametrize(
    "flags, role",
    [([], User.Role.CUSTOMER), (["--staff"], User.Role.STAFF), (["--admin"], User.Role.ADMIN)],
)
def test_create_customer_creates_a_user_of_the_role_with_a_printed_password(flags, role):
    output = run("create_customer", "new.person@example.com", *flags)
    user = User.objects.get(email="new.person@example.com")
    assert user.role == role
    assert user.is_superuser == (role == User.Role.ADMIN)
    assert f"Created {role} new.person@example.com" in output
    match = re.search(r"^Password: (\S+)$", output, re.MULTILINE)
    assert match, output
    assert user.check_password(match[1])


def test_create_customer_with_a_given_password_does_not_print_it():
    output = run("create_customer", "given@example.com", "--password", "a given secret 42")
    assert "a given secret 42" not in output
    assert "Password:" not in output
    assert User.objects.get(email="given@example.com").check_password("a given secret 42")


def test_generated_passwords_differ_between_users():
    first = re.search(r"Password: (\S+)", run("create_customer", "one@example.com"))[1]
    second = re.search(r"Password: (\S+)", run("create_customer", "two@example.com"))[1]
    assert first != second
    assert len(first) >= 12


@pytest.mark.parametrize("email", ["taken@example.com", "TAKEN@Example.com"])
def test_create_customer_refuses_an_email_in_use(email):
    factories.make_user(email="taken@example.com")
    with pytest.raises(CommandError, match="exists already"):
        run("create_customer", email)
    assert User.objects.count() == 1


def test_create_customer_refuses_an_invalid_email():
    with pytest.raises(CommandError):
        run("create_customer", "not-an-email")
    assert not User.objects.exists()


def test_create_customer_refuses_two_roles_at_once():
    with pytest.raises(CommandError):
        run("create_customer", "both@example.com", "--staff", "--admin")
    assert not User.objects.exists()


# api_token


def test_api_token_prints_a_token_that_authenticates_against_the_api():
    user = factories.make_user(email="scripter@example.com")
    token = run("api_token", "scripter@example.com").strip()
    assert token.startswith(ApiToken.PREFIX)
    assert ApiToken.objects.filter(user=user).count() == 1

    response = bearer_client(token).get("/api/v1/account/")
    assert response.status_code == 200, response.content
    assert response.json()["email"] == "scripter@example.com"

    assert bearer_client(token + "x").get("/api/v1/account/").status_code == 401


def test_each_api_token_call_prints_a_new_token():
    factories.make_user(email="scripter@example.com")
    first = run("api_token", "scripter@example.com").strip()
    second = run("api_token", "SCRIPTER@example.com").strip()
    assert first != second
    for token in (first, second):
        assert bearer_client(token).get("/api/v1/account/").status_code == 200


def test_api_token_for_an_unknown_or_inactive_user_fails():
    with pytest.raises(CommandError):
        run("api_token", "nobody@example.com")
    user = factories.make_user(email="gone@example.com")
    User.objects.filter(pk=user.pk).update(is_active=False)
    with pytest.raises(CommandError):
        run("api_token", "gone@example.com")
    assert not ApiToken.objects.exists()


# add_host


def test_add_host_registers_and_probes_a_host():
    region = factories.make_region("jakarta", "Jakarta")
    factories.make_region("singapore", "Singapore")
    output = run("add_host", "sim1", "test:///default", "--region", "singapore")
    host = Host.objects.get(name="sim1")
    assert host.state == Host.State.READY
    assert host.region.slug == "singapore" != region.slug
    assert "sim1 (test:///default) in singapore: ready" in output
    assert "16 CPUs, 3072 MiB memory" in output


def test_add_host_with_an_unsupported_uri_fails_and_records_nothing():
    factories.make_region()
    with pytest.raises(CommandError, match="Unsupported libvirt URI"):
        run("add_host", "bad", "http://x")
    assert not Host.objects.exists()


def test_add_host_for_an_unreachable_host_fails_with_the_reason():
    factories.make_region()
    with pytest.raises(CommandError, match="Probing far failed: .*connect"):
        run("add_host", "far", "qemu+tcp://127.0.0.1:1/system")
    assert Host.objects.get(name="far").state == Host.State.ERROR


def test_add_host_without_a_region_or_with_an_unknown_one_fails():
    with pytest.raises(CommandError, match="No region"):
        run("add_host", "sim1", "test:///default")
    factories.make_region()
    with pytest.raises(CommandError, match="No region 'mars'"):
        run("add_host", "sim1", "test:///default", "--region", "mars")
    assert not Host.objects.exists()


def test_add_host_refuses_a_duplicate_name():
    factories.make_region()
    run("add_host", "sim1", "test:///default")
    with pytest.raises(CommandError, match="exists already"):
        run("add_host", "sim1", "test:///default")
    assert Host.objects.count() == 1
