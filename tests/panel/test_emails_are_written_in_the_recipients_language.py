"""Every mail is written in the language of the account it goes to (`User.language`), whatever language the
process sending it runs in: billing's mails (invoices, reminders), the sign-up's verification link, the
password reset link and the transfer warnings. Their dates and amounts are formatted for that language
("5 Des 2026", "Rp150.000"), and the Content-Language header names it.

The Indonesian texts asserted here are translations the catalogue has; new messages are checked by their
formatting (month names, separators) and the header."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import translation

from billing import dunning, invoices
from panel.models import Server, User
from panel.usage import metering
from tests import factories

pytestmark = pytest.mark.django_db
PASSWORD = "a sturdy passphrase 93"
# Issued on 28 November 2026 (Jakarta), due 7 days later: 5 December, "Dec" in English, "Des" in Indonesian.
ISSUED = factories.local_time(2026, 11, 28, 10)


def account(language: str) -> User:
    user = factories.make_user()
    User.objects.filter(pk=user.pk).update(language=language)
    user.refresh_from_db()
    return user


def mails_to(user: User) -> list:
    return [message for message in mail.outbox if message.to == [user.email]]


def issue(user: User, django_capture_on_commit_callbacks, billing_queue, price: str = "150000"):
    """Issue an invoice and let the worker mail it (with its PDF), as billing.tasks.mail_invoices does."""
    line = invoices.Line(kind="manual", description="Setup fee", unit_price=Decimal(price))
    with django_capture_on_commit_callbacks(execute=True):
        invoice = invoices.issue_invoice(user, [line], at=ISSUED)
    billing_queue.run()
    return invoice


# Billing.


def test_an_indonesian_customers_invoice_and_reminder_are_in_indonesian_while_the_run_is_english(
    django_capture_on_commit_callbacks, billing_queue
):
    customer = account("id")
    with translation.override("en"):
        invoice = issue(customer, django_capture_on_commit_callbacks, billing_queue)
        (issued,) = mails_to(customer)
        assert dunning.remind(ISSUED + timedelta(days=5)) == 1
    reminder = mails_to(customer)[-1]
    assert issued.extra_headers["Content-Language"] == "id"
    assert "Rp150.000" in issued.body and "5 Des 2026" in issued.body
    assert "150,000" not in issued.body and "Dec" not in issued.body
    assert reminder.extra_headers["Content-Language"] == "id"
    assert reminder.subject == f"Pengingat: invoice {invoice.number} akan segera jatuh tempo"
    assert "Rp150.000" in reminder.body and "5 Des 2026" in reminder.body


def test_an_english_customers_invoice_and_reminder_are_in_english_while_the_run_is_indonesian(
    django_capture_on_commit_callbacks, billing_queue
):
    customer = account("en")
    with translation.override("id"):
        invoice = issue(customer, django_capture_on_commit_callbacks, billing_queue)
        assert dunning.remind(ISSUED + timedelta(days=5)) == 1
    issued, reminder = mails_to(customer)
    assert issued.extra_headers["Content-Language"] == "en"
    assert "Rp150,000" in issued.body and "5 Dec 2026" in issued.body
    assert reminder.subject == f"Reminder: invoice {invoice.number} is due soon"
    assert "Rp150,000" in reminder.body


def test_a_payment_thanks_each_customer_in_their_language(django_capture_on_commit_callbacks, billing_queue):
    from billing import payments

    indonesian, english = account("id"), account("en")
    with translation.override("en"):
        for customer in (indonesian, english):
            issue(customer, django_capture_on_commit_callbacks, billing_queue)
            with django_capture_on_commit_callbacks(execute=True):
                payments.record_payment(customer, Decimal("150000"), f"BCA-{customer.pk}")
    assert mails_to(indonesian)[-1].body.startswith("Terima kasih")
    assert mails_to(english)[-1].body == "Thank you: we received your payment."


# The sign-up's verification link and the password reset link.


@pytest.fixture
def client(client, django_capture_on_commit_callbacks):
    """Mails go out when the transaction commits: run those callbacks after each POST."""
    original = client.post

    def post(*args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return original(*args, **kwargs)

    client.post = post
    return client


def sign_up(client, language: str, browser: str) -> User:
    data = {"email": "budi@example.com", "password1": PASSWORD, "password2": PASSWORD, "language": language}
    response = client.post("/accounts/signup/", data, HTTP_ACCEPT_LANGUAGE=browser)
    assert response.status_code == 302
    return User.objects.get(email="budi@example.com")


def test_the_verification_mail_is_in_the_language_chosen_at_sign_up(client):
    user = sign_up(client, "id", browser="en")
    assert user.language == "id"
    (message,) = mail.outbox
    assert message.extra_headers["Content-Language"] == "id"
    assert message.subject == "Verifikasi alamat email Anda untuk VPS Panel"
    assert "Selama alamat email belum diverifikasi, akun ini tidak dapat memesan server." in message.body


def test_an_english_sign_up_from_an_indonesian_browser_is_verified_in_english(client):
    user = sign_up(client, "en", browser="id")
    assert user.language == "en"
    (message,) = mail.outbox
    assert message.extra_headers["Content-Language"] == "en"
    assert message.subject == "Verify your email address for VPS Panel"
    # The page after it follows the account, not the browser.
    assert client.get("/servers/new/", HTTP_ACCEPT_LANGUAGE="id")["Content-Language"] == "en"


@pytest.mark.parametrize(
    ("language", "browser", "subject", "line"),
    [
        ("id", "en", "Reset kata sandi VPS Panel Anda", "Buat kata sandi baru di halaman ini:"),
        ("en", "id", "Reset your VPS Panel password", "Choose a new password on this page:"),
    ],
)
def test_the_password_reset_mail_is_in_the_accounts_language_not_the_askers(
    client, language, browser, subject, line
):
    account(language)
    email = User.objects.get().email
    response = client.post("/accounts/password_reset/", {"email": email}, HTTP_ACCEPT_LANGUAGE=browser)
    assert response.status_code == 302
    assert response.wsgi_request.LANGUAGE_CODE == browser  # the page itself is in the browser's language
    (message,) = mail.outbox
    assert message.extra_headers["Content-Language"] == language
    assert message.subject == subject and line in message.body
    assert re.search(r"/accounts/reset/\S+/", message.body)


# Transfer warnings.


def test_a_transfer_warning_is_in_the_owners_language_with_decimal_commas(catalog):
    owner = account("id")
    server = factories.make_server(owner, catalog, name="web1")
    server = Server.objects.select_related("owner", "plan").get(pk=server.pk)
    gib = metering.GIB
    with translation.override("en"):
        metering._notify(server, 80, int(1.5 * gib), 2 * gib)
    (message,) = mail.outbox
    assert message.extra_headers["Content-Language"] == "id"
    assert message.subject == "web1 telah menggunakan 80% kuota trafik bulanannya"
    assert "1,50 GiB" in message.body and "2,00 GiB" in message.body
