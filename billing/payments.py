"""Money in and corrections: payments staff record or a provider confirms, and staff adjustments. Each is
posted to the ledger and then settles the account's open invoices (billing.invoices)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from . import signals
from .errors import BillingError, ReferenceTaken, refuse_own
from .invoices import settle
from .ledger import lock, post
from .models import LedgerEntry, Payment
from .money import currency, quantize
from .texts import Message

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser


def record_payment(
    account: AbstractBaseUser,
    amount: Decimal,
    reference: str,
    *,
    method: str = "bank_transfer",
    by: AbstractBaseUser | None = None,
    at: datetime | None = None,
) -> tuple[Payment, bool]:
    """Record money received; the same reference again returns the first payment (idempotent). A reference
    another customer's payment holds raises ReferenceTaken; staff cannot record on their own account."""
    refuse_own(account, by)
    amount = quantize(Decimal(amount))
    if amount <= 0:
        raise BillingError(_("A payment must be more than zero."))
    reference = reference.strip()
    if not reference:
        raise BillingError(_("A payment needs a reference (e.g. the bank transfer's)."))
    existing = Payment.objects.filter(reference=reference).first()
    if existing:
        if existing.account_id != account.pk:
            raise ReferenceTaken(_("This reference belongs to another customer's payment."))
        return existing, False
    try:
        with transaction.atomic():
            lock(account)
            payment = Payment.objects.create(
                account=account,
                amount=amount,
                currency=currency(),
                reference=reference,
                method=method,
                recorded_by=by,
                received_at=at or timezone.now(),
            )
            post(
                account,
                LedgerEntry.Kind.PAYMENT,
                amount,
                Message(gettext_noop("Payment %(ref)s"), {"ref": reference}),
                by=by,
                payment=payment,
                at=at,
            )
            settle(account, at)
            signals.payment_recorded.send(sender=None, account=account, payment=payment, by=by)
    except IntegrityError:  # the same reference recorded concurrently
        existing = Payment.objects.get(reference=reference)
        if existing.account_id != account.pk:
            raise ReferenceTaken(_("This reference belongs to another customer's payment.")) from None
        return existing, False
    return payment, True


def adjust(
    account: AbstractBaseUser, amount: Decimal, reason: str, by: AbstractBaseUser | None
) -> LedgerEntry:
    """A manual correction (positive credits the account) with its reason and who made it."""
    refuse_own(account, by)
    if not reason.strip():
        raise BillingError(_("An adjustment needs a reason."))
    with transaction.atomic():
        lock(account)
        entry = post(account, LedgerEntry.Kind.ADJUSTMENT, Decimal(amount), reason, by=by)
        settle(account)
        signals.balance_adjusted.send(sender=None, account=account, entry=entry, by=by)
    return entry
