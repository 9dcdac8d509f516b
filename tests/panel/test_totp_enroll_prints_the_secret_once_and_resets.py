"""`manage.py totp_enroll EMAIL` enrols a user from the shell and prints only the base32 secret on stdout;
enrolling again is an error naming --reset; `--reset` removes the factor and the recovery codes."""

import io

import pytest
from django.core.management import CommandError, call_command
from django_otp.plugins.otp_static.models import StaticDevice

from panel.accounts import totp
from panel.models import ActivityEvent, User
from tests import factories

pytestmark = pytest.mark.django_db


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("totp_enroll", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_totp_enroll_prints_the_secret_and_nothing_else():
    user = factories.make_user(User.Role.ADMIN, email="root@example.com", totp=False)
    out, err = run("ROOT@example.com")
    secret = out.strip()
    assert out == secret + "\n"
    assert len(secret) == 32 and set(secret) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    assert "root@example.com" in err
    assert totp.has_totp(user)
    # The printed secret makes the codes the panel accepts.
    assert totp.verify(user, totp.current_code(secret)) is not None
    assert ActivityEvent.objects.filter(account=user, type=ActivityEvent.Type.TOTP_ENABLED).count() == 1


def test_enrolling_twice_is_an_error_that_names_reset():
    user = factories.make_user(User.Role.STAFF)
    with pytest.raises(CommandError, match="--reset"):
        run(user.email)
    assert totp.has_totp(user)


def test_reset_removes_the_factor_and_the_recovery_codes():
    user = factories.make_user(User.Role.STAFF)
    totp.regenerate_recovery_codes(user, password="correct horse 42")
    out, err = run(user.email, "--reset")
    assert out == "" and "Removed" in err
    assert not totp.has_totp(user)
    assert not StaticDevice.objects.filter(user=user).exists()
    assert ActivityEvent.objects.filter(account=user, type=ActivityEvent.Type.TOTP_DISABLED).count() == 1
    # And it can be enrolled again.
    out, _err = run(user.email)
    assert len(out.strip()) == 32


def test_an_unknown_email_is_a_clear_error():
    with pytest.raises(CommandError, match="No user with the email nobody@example.com"):
        run("nobody@example.com")
