"""With SMTP configured, mail leaves a request through a Celery task: sending returns at once, a worker
delivers, and a mail server that fails is tried again later from the message that failed, without sending
any message twice."""

from __future__ import annotations

import os
import smtplib
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.core.mail import EmailMultiAlternatives, send_mail
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.utils import timezone

from billing import invoice_mail, invoices, subscriptions
from billing.invoices import MAIL_INVOICES
from billing.models import Invoice
from panel.mail import from_data, to_data
from panel.models import User
from tests import factories
from tests.conftest import wait_for


class FlakyBackend(LocmemBackend):
    """A mail server that refuses the second message the first time it is offered."""

    refused: list[str] = []

    def send_messages(self, messages):
        for message in messages:
            if message.subject == "second" and "second" not in self.refused:
                self.refused.append("second")
                raise smtplib.SMTPServerDisconnected("connection unexpectedly closed")
        return super().send_messages(messages)


class RefusingBackend(LocmemBackend):
    """A mail server that refuses one recipient for good (a 550 answer)."""

    offered: list[str] = []

    def send_messages(self, messages):
        for message in messages:
            self.offered.append(message.subject)
            if message.to == ["nobody@example.com"]:
                raise smtplib.SMTPRecipientsRefused({"nobody@example.com": (550, b"no such user")})
        return super().send_messages(messages)


@pytest.fixture
def queued_mail(settings):
    settings.EMAIL_BACKEND = "panel.mail.QueuedEmailBackend"
    settings.MAIL_DELIVERY_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.MAIL_RETRY_SECONDS = 0
    mail.outbox = []
    return settings


def test_a_message_travels_whole(db):
    message = EmailMultiAlternatives(
        "Invoice INV-2026-000001", "Due on 3 December.", "billing@example.com", ["a@example.com"],
        cc=["b@example.com"], reply_to=["help@example.com"], headers={"X-Panel": "1"},
    )  # fmt: skip
    message.attach_alternative("<p>Due on 3 December.</p>", "text/html")
    message.attach("invoice.txt", b"INV-2026-000001\n", "text/plain")
    copy = from_data(to_data(message))
    assert (copy.subject, copy.body, copy.from_email) == (message.subject, message.body, message.from_email)
    assert (copy.to, copy.cc, copy.reply_to, copy.extra_headers) == (
        message.to, message.cc, message.reply_to, message.extra_headers,
    )  # fmt: skip
    assert copy.alternatives == [("<p>Due on 3 December.</p>", "text/html")]
    assert (
        tuple(copy.attachments[0])[:2]
        == tuple(message.attachments[0])[:2]
        == ("invoice.txt", "INV-2026-000001\n")
    )


def test_sending_queues_and_a_worker_delivers(queued_mail, celery_worker):
    sent = send_mail("Welcome", "Your server is ready.", "panel@example.com", ["c@example.com"])
    assert sent == 1
    wait_for(lambda: len(mail.outbox) == 1, message="the worker did not deliver the mail")
    assert mail.outbox[0].subject == "Welcome" and mail.outbox[0].to == ["c@example.com"]


def test_an_order_returns_before_its_invoice_mail_is_delivered(
    queued_mail, billing_tasks_to_the_broker, celery_worker, catalog
):
    queued_mail.INVOICE_MAIL_DELAY_SECONDS = 1  # the sweep hands the mail on a second later (30 s unless set)
    customer = factories.make_user(User.Role.CUSTOMER)
    ordered = timezone.now()
    subscriptions.open_subscription(customer, catalog["plan"], "ref-1", "web1.example.com")
    assert invoice_mail.hand_on_due(ordered) == 0  # not due yet
    wait_for(lambda: invoice_mail.hand_on_due() == 1, message="the mail did not fall due")  # as beat does
    wait_for(lambda: any(m.subject.startswith("Invoice INV-") for m in mail.outbox))
    assert [m.to for m in mail.outbox] == [[customer.email]]


def test_a_new_servers_invoice_is_mailed_by_the_sweep_after_the_delay_and_other_invoices_at_once(
    billing_queue, catalog, settings, django_capture_on_commit_callbacks
):
    settings.INVOICE_MAIL_DELAY_SECONDS = 45
    customer = factories.make_user(User.Role.CUSTOMER)
    with django_capture_on_commit_callbacks(execute=True):
        subscriptions.open_subscription(customer, catalog["plan"], "ref-1", "web1.example.com")
    assert billing_queue.sent == []  # the order sends no mail task: the sweep does, once it is due
    with django_capture_on_commit_callbacks(execute=True):
        manual = invoices.issue_invoice(
            customer, [invoices.Line(kind="manual", description="Setup", unit_price=Decimal(1))]
        )
    assert billing_queue.sent == [(MAIL_INVOICES, ([manual.pk],))]
    billing_queue.sent.clear()
    first = Invoice.objects.exclude(pk=manual.pk).get(account=customer)
    now = timezone.now()

    def sweep(at) -> list:
        with django_capture_on_commit_callbacks(execute=True):
            invoice_mail.hand_on_due(at)
        return [args for _name, args in billing_queue.sent]

    assert sweep(now + timedelta(seconds=30)) == []
    assert sweep(now + timedelta(seconds=46)) == [([first.pk],)]
    assert sweep(now + timedelta(seconds=56)) == [([first.pk],)]  # handed on once: the next sweep skips it
    assert billing_queue.run() == [1]  # (the manual invoice's task was dropped above: its mail waits a day)
    assert [m.subject for m in mail.outbox] == [f"Invoice {first.number}"]
    assert Invoice.objects.filter(account=customer, mail_after__isnull=False).get() == manual


def test_a_mail_task_lost_on_the_way_is_sent_again_a_day_later_and_a_mail_goes_out_once(
    db, billing_queue, django_capture_on_commit_callbacks
):
    customer = factories.make_user(User.Role.CUSTOMER)
    with django_capture_on_commit_callbacks(execute=True):
        invoice = invoices.issue_invoice(
            customer, [invoices.Line(kind="manual", description="Setup", unit_price=Decimal(1))]
        )
    billing_queue.sent.clear()  # the worker or the broker lost it
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        assert invoice_mail.hand_on_due(now + timedelta(hours=23)) == 0
        assert invoice_mail.hand_on_due(now + timedelta(days=1, seconds=1)) == 1
    assert billing_queue.sent == [(MAIL_INVOICES, ([invoice.pk],))]
    task = billing_queue.sent[0]
    assert billing_queue.run() == [1]
    billing_queue.sent.append(task)  # delivered twice (a redelivery after a lost acknowledgement)
    assert billing_queue.run() == [0]
    assert [m.subject for m in mail.outbox] == [f"Invoice {invoice.number}"]
    with django_capture_on_commit_callbacks(execute=True):
        assert invoice_mail.hand_on_due(now + timedelta(days=3)) == 0


def test_a_failing_mail_server_is_tried_again_from_the_message_that_failed(queued_mail, celery_worker):
    queued_mail.MAIL_DELIVERY_BACKEND = f"{__name__}.FlakyBackend"
    FlakyBackend.refused = []
    mail.send_mass_mail(
        [
            (subject, "body", "panel@example.com", ["d@example.com"])
            for subject in ("first", "second", "third")
        ]
    )
    wait_for(lambda: len(mail.outbox) == 3, message="the retry did not deliver the rest")
    assert [m.subject for m in mail.outbox] == ["first", "second", "third"]
    assert FlakyBackend.refused == ["second"]


def test_a_message_refused_for_good_is_skipped_not_retried(queued_mail, celery_worker):
    queued_mail.MAIL_DELIVERY_BACKEND = f"{__name__}.RefusingBackend"
    RefusingBackend.offered = []
    mail.send_mass_mail(
        [
            ("to a", "body", "panel@example.com", ["a@example.com"]),
            ("to nobody", "body", "panel@example.com", ["nobody@example.com"]),
            ("to b", "body", "panel@example.com", ["b@example.com"]),
        ]
    )
    wait_for(lambda: len(mail.outbox) == 2, message="the messages after the refused one were not sent")
    assert [m.subject for m in mail.outbox] == ["to a", "to b"]
    assert RefusingBackend.offered == ["to a", "to nobody", "to b"]  # offered once each: no retry


@pytest.mark.parametrize("delay, starts", [("-1", False), ("3600", True)])
def test_a_negative_mail_delay_is_refused_at_start(delay, starts):
    """The delay is kept in the database, not by the broker: an hour is as good as a second."""
    env = {
        **os.environ,
        "INVOICE_MAIL_DELAY_SECONDS": delay,
        "REDIS_URL": "redis://127.0.0.1:6379/15",
        "SECRET_KEY": "test-only-secret-key",
        "DJANGO_SETTINGS_MODULE": "panel.settings",
    }
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], env=env, capture_output=True, text=True
    )
    assert (done.returncode == 0) == starts, done.stderr
    if not starts:
        assert "INVOICE_MAIL_DELAY_SECONDS" in done.stderr
