import logging

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from . import checkouts, cycle, invoice_mail, providers
from .models import Checkout

log = logging.getLogger(__name__)

MAIL_RETRY_FACTOR = 30  # seconds before the first retry of a mail, doubled each time (with jitter)
MAIL_RETRY_MAX = 3600
MAIL_RETRIES = 5


@shared_task(acks_late=True)
def billing_run() -> dict:
    """Beat, hourly: the monthly renewals fanned out over the workers, a task per batch of accounts
    (`renew_accounts`), then the other periodic steps here. The renewals and `manage.py billing_run`
    (everything in one process) invoice the same periods."""
    at = timezone.now()
    batches = 0
    for accounts in cycle.due_account_batches(at, settings.BILLING_RENEWAL_BATCH):
        renew_accounts.delay(accounts, at.isoformat())
        batches += 1
    return {"renewal_batches": batches, **cycle.run(at, renewals=False)}


@shared_task(acks_late=True)
def renew_accounts(account_ids: list[int], at: str) -> int:
    """Renew what was due at `at` on these accounts, in one transaction (billing.cycle.renew_accounts: the
    invoice numbers taken last, for all of them at once). Idempotent: a redelivered batch (a worker lost
    mid-way) finds the accounts it renewed with nothing due any more, or renews them if it was lost before
    its commit."""
    return cycle.renew_accounts(account_ids, parse_datetime(at))


@shared_task(acks_late=True)
def poll_checkouts() -> dict:
    """Ask the providers about checkouts still pending (a notification that never arrived)."""
    return checkouts.poll()


@shared_task(acks_late=True, autoretry_for=(providers.ProviderError,), retry_backoff=5, max_retries=5)
def refresh_checkout(checkout_id: int) -> str:
    """Ask the provider about one checkout now (the customer is back on the return page)."""
    checkout = Checkout.objects.filter(pk=checkout_id).first()
    if checkout is None:
        return "gone"
    return checkouts.refresh(checkout).status


@shared_task(acks_late=True)
def hand_on_due_invoice_mails() -> int:
    """Beat, every few seconds: send the mail tasks of the invoices whose mail is due (a new server's first
    invoice, INVOICE_MAIL_DELAY_SECONDS after the order; one whose task was lost, a day later)."""
    return invoice_mail.hand_on_due()


@shared_task(bind=True, acks_late=True, max_retries=MAIL_RETRIES)
def mail_invoices(self, invoice_ids: list[int]) -> int:
    """Mail each newly issued invoice to its customer, in their language, with its PDF attached, one after
    the other; those that failed are tried again later (backing off), so a retry sends again only what was
    not sent yet, and one invoice that keeps failing never holds back the others; after MAIL_RETRIES retries
    its mail is given up (logged; beat's sweep leaves it)."""
    sent, failed, error = 0, [], None
    for invoice_id in invoice_ids:
        try:
            sent += invoice_mail.send([invoice_id])
        except Exception as exc:
            failed.append(invoice_id)
            error = exc
    if failed and self.request.retries >= MAIL_RETRIES:
        invoice_mail.give_up(failed)
        log.error("gave up mailing invoices %s after %d tries: %s", failed, MAIL_RETRIES + 1, error)
        raise error
    if failed:
        countdown = get_exponential_backoff_interval(
            MAIL_RETRY_FACTOR, self.request.retries, MAIL_RETRY_MAX, full_jitter=True
        )
        raise self.retry(args=[failed], exc=error, countdown=countdown) from error
    return sent
