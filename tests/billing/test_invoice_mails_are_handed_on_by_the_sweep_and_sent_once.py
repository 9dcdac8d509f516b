"""Beat's sweep hands on the invoice mails that are due (billing.invoice_mail): rows another transaction
holds are skipped, not waited for; an invoice voided before its mail is neither handed on nor mailed; a
task left from before an upgrade (its invoice has no `mail_after`) still mails it, once; a mail that keeps
failing is given up after its retries, and the sweep leaves it."""

from __future__ import annotations

import smtplib
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.db import connection, transaction
from django.utils import timezone

from billing import invoice_mail, invoices
from billing.invoices import MAIL_INVOICES
from billing.models import Invoice
from billing.tasks import MAIL_RETRIES
from panel.celery import app
from panel.models import User
from tests import factories


def issue(customer: User, delay: int, capture) -> Invoice:
    with capture(execute=True):
        return invoices.issue_invoice(
            customer,
            [invoices.Line(kind="manual", description="Setup", unit_price=Decimal(10))],
            mail_delay=delay,
        )


def sweep(at, capture) -> int:
    with capture(execute=True):
        return invoice_mail.hand_on_due(at)


def test_the_sweep_is_a_periodic_job():
    job = settings.CELERY_BEAT_SCHEDULE["hand-on-due-invoice-mails"]
    assert job == {"task": "billing.tasks.hand_on_due_invoice_mails", "schedule": 10.0}


@pytest.mark.django_db(transaction=True)
def test_a_row_another_transaction_locks_waits_for_the_next_sweep_one_it_references_does_not(
    billing_queue,
):
    customer = factories.make_user(User.Role.CUSTOMER)
    with transaction.atomic():
        held = invoices.issue_invoice(
            customer, [invoices.Line(kind="manual", description="A", unit_price=Decimal(1))], mail_delay=30
        )
        free = invoices.issue_invoice(
            customer, [invoices.Line(kind="manual", description="B", unit_price=Decimal(1))], mail_delay=30
        )
    later = timezone.now() + timedelta(minutes=1)
    locked, release, swept = threading.Event(), threading.Event(), []

    def hold() -> None:
        try:
            with transaction.atomic():
                Invoice.objects.select_for_update().get(pk=held.pk)  # a payment settling it, say
                with connection.cursor() as cursor:  # what a new row referencing it takes at its commit
                    table = Invoice._meta.db_table
                    cursor.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR KEY SHARE", [free.pk])
                locked.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(timeout=10)
        swept.append(invoice_mail.hand_on_due(later))  # at once: SKIP LOCKED, and NO KEY for the other
    finally:
        release.set()
        holder.join(timeout=30)
    assert swept == [1] and billing_queue.sent == [(MAIL_INVOICES, ([free.pk],))]
    assert invoice_mail.hand_on_due(later) == 1  # the next sweep takes it
    assert billing_queue.sent[1] == (MAIL_INVOICES, ([held.pk],))


def test_an_invoice_voided_before_its_mail_is_not_handed_on_nor_mailed(
    db, billing_queue, staff, django_capture_on_commit_callbacks
):
    customer = factories.make_user(User.Role.CUSTOMER)
    voided = issue(customer, 30, django_capture_on_commit_callbacks)
    invoices.void_invoice(voided, by=staff)
    assert sweep(timezone.now() + timedelta(minutes=1), django_capture_on_commit_callbacks) == 0
    billing_queue.sent.append((MAIL_INVOICES, ([voided.pk],)))  # a task that was on its way regardless
    assert billing_queue.run() == [0]
    assert not mail.outbox


def test_a_task_from_before_the_upgrade_mails_its_invoice_once(
    db, billing_queue, django_capture_on_commit_callbacks
):
    customer = factories.make_user(User.Role.CUSTOMER)
    invoice = issue(customer, 0, django_capture_on_commit_callbacks)
    Invoice.objects.filter(pk=invoice.pk).update(mail_after=None)  # as the migration leaves older rows
    task = billing_queue.sent[0]
    billing_queue.sent.append(task)  # and delivered twice
    assert billing_queue.run() == [1, 0]
    assert [m.subject for m in mail.outbox] == [f"Invoice {invoice.number}"]
    invoice.refresh_from_db()
    assert invoice.mailed_at is not None and invoice.mail_after is None


class RefusingServer(LocmemBackend):
    def send_messages(self, messages):
        raise smtplib.SMTPServerDisconnected("connection unexpectedly closed")


class RefusingOnceServer(LocmemBackend):
    refused = 0

    def send_messages(self, messages):
        if not RefusingOnceServer.refused:
            RefusingOnceServer.refused += 1
            raise smtplib.SMTPServerDisconnected("connection unexpectedly closed")
        return super().send_messages(messages)


def test_a_mail_that_fails_before_its_last_try_is_tried_again(
    db, billing_queue, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = f"{__name__}.RefusingOnceServer"
    RefusingOnceServer.refused = 0
    customer = factories.make_user(User.Role.CUSTOMER)
    invoice = issue(customer, 0, django_capture_on_commit_callbacks)
    # The try before the last fails; its retry (run at once here) is the last, and mails it.
    app.tasks[MAIL_INVOICES].apply(args=[[invoice.pk]], retries=MAIL_RETRIES - 1)
    assert RefusingOnceServer.refused == 1
    assert [m.subject for m in mail.outbox] == [f"Invoice {invoice.number}"]
    invoice.refresh_from_db()
    assert invoice.mailed_at is not None and invoice.mail_after is None


def test_a_mail_that_keeps_failing_is_given_up_after_its_retries(
    db, billing_queue, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = f"{__name__}.RefusingServer"
    customer = factories.make_user(User.Role.CUSTOMER)
    invoice = issue(customer, 0, django_capture_on_commit_callbacks)
    assert Invoice.objects.get(pk=invoice.pk).mail_after is not None  # due again tomorrow unless mailed
    # The last try (a worker's retries are counted in the request; run here, a retry runs at once).
    last = app.tasks[MAIL_INVOICES].apply(args=[[invoice.pk]], retries=MAIL_RETRIES)
    assert last.state == "FAILURE" and isinstance(last.result, smtplib.SMTPServerDisconnected)
    invoice.refresh_from_db()
    assert invoice.mail_after is None and invoice.mailed_at is None
    assert sweep(timezone.now() + timedelta(days=2), django_capture_on_commit_callbacks) == 0
