"""Checkouts: paying through a provider (billing.providers), for a top-up of the balance or for what an
open invoice still needs.

- `start` records the checkout (pending) before the provider is asked, then asks it for the payment page;
  a provider that refuses or cannot be reached leaves the checkout failed with the reason. A checkout
  whose answer was lost (the process died after asking) is found again by its reference.
- A notification only says when to look: `refresh` asks the provider's status API and `apply` records
  the answer. A confirmed payment of exactly the checkout's amount, in the installation's currency, is
  credited once: the payment's reference is the provider's transaction id (unique), so a second
  notification, a poll and a staff-recorded payment with that reference credit nothing more. Late,
  repeated and reordered notifications change nothing, because the provider's status decides.
- `poll` asks about checkouts still pending (a notification that never came), oldest asked first.

The credit then pays open invoices oldest first and unsuspends the account as any payment does
(billing.payments, billing.invoices).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from . import providers, signals
from .checkout_states import may_move
from .errors import BillingError, ReferenceTaken
from .invoices import amount_due
from .ledger import lock, with_withheld
from .models import Checkout, Invoice
from .money import currency, format_money, quantize
from .payments import record_payment

log = logging.getLogger(__name__)

# A customer needs a moment to pay: checkouts younger than this are not polled.
POLL_AFTER = timedelta(minutes=1)
POLL_BATCH = 200
# A checkout the provider still calls pending this long after its expiry is closed here.
EXPIRY_GRACE = timedelta(hours=1)


class ProviderUnavailable(BillingError):
    """The provider could not make the checkout; nothing was charged."""


def _reference(provider: str) -> str:
    """Our order id at the provider: unique, short, and not guessable."""
    return f"{provider[:3]}-{secrets.token_hex(8)}"


def limits() -> tuple[Decimal, Decimal]:
    return quantize(Decimal(str(settings.TOP_UP_MIN))), quantize(Decimal(str(settings.TOP_UP_MAX)))


def check_top_up_amount(amount: Decimal) -> Decimal:
    """A top-up's amount, or BillingError saying what is allowed."""
    low, high = limits()
    if amount != quantize(amount):
        raise BillingError(_("The amount is more precise than the currency allows."))
    if amount < low or amount > high:
        raise BillingError(
            _("A top-up is from %(low)s to %(high)s.")
            % {"low": format_money(low), "high": format_money(high)}
        )
    return amount


def start(
    account,
    provider_name: str,
    *,
    amount: Decimal | None = None,
    invoice: Invoice | None = None,
    return_url: Callable[[Checkout], str],
) -> Checkout:
    """A checkout at the provider for `amount` (a top-up) or for what `invoice` still needs, with its
    payment page in `checkout_url`. Paying an invoice again while its checkout with the same provider is
    still pending and unexpired returns that one. Raises BillingError (bad amount, unknown provider, the
    invoice not open) and ProviderUnavailable (the provider refused or could not be reached)."""
    provider = providers.get(provider_name)
    if provider is None:
        raise BillingError(_("This payment provider is not configured."))
    now = timezone.now()
    if invoice is not None:
        current = with_withheld(Invoice.objects.filter(pk=invoice.pk, account=account)).first()
        if current is None or current.status != Invoice.Status.OPEN:
            raise BillingError(_("Only open invoices can be paid."))
        amount = amount_due(current)
        if amount <= 0:
            raise BillingError(_("Nothing is left to pay on this invoice."))
        reusable = (
            Checkout.objects.filter(
                account=account, invoice=current, provider=provider.name, status=Checkout.Status.PENDING,
                amount=amount, expires_at__gt=now + timedelta(minutes=5),
            )
            .exclude(checkout_url="")
            .first()
        )  # fmt: skip
        if reusable:
            return reusable
        invoice, purpose, description = (
            current,
            Checkout.Purpose.INVOICE,
            _("Invoice %(number)s") % {"number": current.number},
        )
    else:
        if amount is None:
            raise BillingError(_("Give the amount to add."))
        amount = check_top_up_amount(quantize(Decimal(amount)))
        purpose, description = Checkout.Purpose.TOP_UP, _("Account top-up")
    checkout = Checkout.objects.create(
        account=account,
        provider=provider.name,
        purpose=purpose,
        invoice=invoice,
        amount=amount,
        currency=currency(),
        reference=_reference(provider.name),
        created_at=now,
        expires_at=now + timedelta(minutes=settings.CHECKOUT_EXPIRY_MINUTES),
    )
    order = providers.CheckoutRequest(
        reference=checkout.reference,
        amount=amount,
        currency=checkout.currency,
        email=account.email,
        name=account.get_full_name() or account.email,
        description=description,
        return_url=return_url(checkout),
        expires_at=checkout.expires_at,
    )
    try:
        made = provider.create_checkout(order)
    except providers.ProviderError as exc:
        log.warning("checkout %s: %s", checkout.reference, exc)
        Checkout.objects.filter(pk=checkout.pk, status=Checkout.Status.PENDING).update(
            status=Checkout.Status.FAILED, status_reason=str(exc)[:255], closed_at=timezone.now()
        )
        raise ProviderUnavailable(
            _("%(provider)s could not start the payment. Please try again in a moment.")
            % {"provider": provider.label or provider.name}
        ) from exc
    Checkout.objects.filter(pk=checkout.pk).update(
        provider_id=made.provider_id, checkout_url=made.url, expires_at=made.expires_at or checkout.expires_at
    )
    checkout.refresh_from_db()
    return checkout


def refresh(checkout: Checkout) -> Checkout:
    """Ask the provider what became of the checkout and record it (a paid one is left alone). Raises
    providers.ProviderError when the provider cannot be asked."""
    if checkout.status == Checkout.Status.PAID:
        return checkout
    provider = providers.get(checkout.provider)
    if provider is None:
        raise providers.ProviderError(f"{checkout.provider} is not configured")
    return apply(checkout.pk, provider.fetch_status(checkout))


def apply(checkout_pk: int, status: providers.ProviderStatus) -> Checkout:
    """Record what the provider's status API said of a checkout, under the account's lock: credit a
    confirmed payment once, close an expired or failed one, note the time of asking otherwise."""
    now = timezone.now()
    with transaction.atomic():
        account_id = Checkout.objects.values_list("account_id", flat=True).get(pk=checkout_pk)
        account = lock(get_user_model()(pk=account_id))
        checkout = Checkout.objects.select_for_update().get(pk=checkout_pk)
        checkout.checked_at = now
        if status.provider_id and not checkout.provider_id:
            checkout.provider_id = status.provider_id
        if checkout.status == Checkout.Status.PAID:
            # Credited already: a repeated or late notification. A refund or chargeback the provider
            # reports later is for staff to see, not for billing to undo.
            if status.state == providers.FAILED:
                log.warning(
                    "checkout %s was paid; %s now says %s",
                    checkout.reference,
                    checkout.provider,
                    status.detail,
                )
        elif status.state == providers.PAID:
            _paid(account, checkout, status, now)
        elif status.state in (providers.EXPIRED, providers.FAILED) and may_move(
            checkout.status, status.state
        ):
            checkout.status = status.state
            checkout.status_reason = status.detail[:255]
            checkout.closed_at = now
        checkout.save()
    return checkout


def _paid(account, checkout: Checkout, status: providers.ProviderStatus, now: datetime) -> None:
    """Credit a payment the provider confirmed, when it is exactly what the checkout asked for."""
    if status.currency != checkout.currency or checkout.currency != currency():
        _refuse(account, checkout, f"paid in {status.currency}, expected {checkout.currency}", now)
        return
    paid = quantize(status.amount) if status.amount is not None else None
    if paid != checkout.amount:
        _refuse(account, checkout, f"paid {paid}, expected {quantize(checkout.amount)}", now)
        return
    if not status.transaction_id:
        _refuse(account, checkout, "the provider named no transaction", now)
        return
    try:
        payment, _created = record_payment(
            account, checkout.amount, status.transaction_id, method=checkout.provider, at=now
        )
    except ReferenceTaken:
        _refuse(account, checkout, f"transaction {status.transaction_id} is another customer's payment", now)
        return
    checkout.status = Checkout.Status.PAID
    checkout.status_reason = status.detail[:255]
    checkout.transaction_id = status.transaction_id
    checkout.payment = payment
    checkout.paid_at = checkout.closed_at = now


def _refuse(account, checkout: Checkout, reason: str, now: datetime) -> None:
    """A payment the provider reports that cannot be credited as it is: nothing is credited, the checkout
    fails with the reason, and the customer's activity log says so for staff (once)."""
    log.error("checkout %s not credited: %s", checkout.reference, reason)
    if checkout.status != Checkout.Status.FAILED:
        signals.checkout_refused.send(sender=None, account=account, checkout=checkout, reason=reason)
    checkout.status = Checkout.Status.FAILED
    checkout.status_reason = reason[:255]
    checkout.closed_at = checkout.closed_at or now  # told again: it failed when first told


def find(provider_name: str, reference: str) -> Checkout | None:
    return Checkout.objects.filter(provider=provider_name, reference=reference).first()


def due_for_poll(now: datetime | None = None) -> list[int]:
    """Checkouts still pending that a customer had time to pay, those never asked about or asked about
    longest ago first."""
    now = now or timezone.now()
    return list(
        Checkout.objects.filter(status=Checkout.Status.PENDING, created_at__lte=now - POLL_AFTER)
        .filter(Q(checked_at__isnull=True) | Q(checked_at__lte=now - POLL_AFTER))
        .order_by(F("checked_at").asc(nulls_first=True), "created_at")
        .values_list("pk", flat=True)[:POLL_BATCH]
    )


def poll(now: datetime | None = None) -> dict[str, int]:
    """Ask the providers about checkouts still pending. A provider that cannot be asked is not asked again
    in this run (its checkouts wait for the next one). A checkout pending an hour past its expiry (the
    provider never said, or a Midtrans transaction never made) expires here."""
    now = now or timezone.now()
    counts = {"asked": 0, "paid": 0, "closed": 0, "errors": 0}
    down: set[str] = set()
    for pk in due_for_poll(now):
        checkout = Checkout.objects.get(pk=pk)
        if checkout.provider in down:
            Checkout.objects.filter(pk=pk).update(checked_at=now)
            continue
        try:
            after = refresh(checkout)
        except providers.ProviderError as exc:
            counts["errors"] += 1
            down.add(checkout.provider)
            log.warning("checkout %s: could not ask %s: %s", checkout.reference, checkout.provider, exc)
            Checkout.objects.filter(pk=pk).update(checked_at=now)
            after = checkout
        counts["asked"] += 1
        if after.status == Checkout.Status.PAID:
            counts["paid"] += 1
        elif after.status != Checkout.Status.PENDING:
            counts["closed"] += 1
        elif after.expires_at < now - EXPIRY_GRACE:
            Checkout.objects.filter(pk=pk, status=Checkout.Status.PENDING).update(
                status=Checkout.Status.EXPIRED, status_reason="no answer from the provider", closed_at=now
            )
            counts["closed"] += 1
    return counts


def stale(checkout: Checkout, seconds: int = 5) -> bool:
    """Whether the checkout is pending and was not asked about in the last `seconds` (the return page asks
    again then)."""
    return checkout.status == Checkout.Status.PENDING and (
        checkout.checked_at is None or checkout.checked_at < timezone.now() - timedelta(seconds=seconds)
    )
