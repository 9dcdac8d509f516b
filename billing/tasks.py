from celery import shared_task

from . import checkouts, cycle, invoice_mail, providers
from .models import Checkout


@shared_task(acks_late=True)
def billing_run() -> dict:
    return cycle.run()


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


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=30, max_retries=5)
def mail_invoices(invoice_ids: list[int]) -> int:
    """Mail each newly issued invoice to its customer, in their language, with its PDF attached."""
    return invoice_mail.send(invoice_ids)
