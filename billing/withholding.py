"""Income tax withheld by company customers (PPh 23, 2 % of the price of services before PPN): the customer
pays the invoice less the tax and pays the tax to the tax office for us, giving us the withholding slip
(bukti potong). Staff record the slip against the invoice (its number, the amount, a scan): the amount
settles that part of the invoice without money arriving, as a ledger entry of its own kind (withholding)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from . import signals
from .errors import BillingError, refuse_own
from .invoices import amount_due, settle
from .ledger import lock, post, with_withheld
from .models import Invoice, LedgerEntry, WithholdingSlip
from .money import format_money, quantize
from .texts import Message

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.core.files.uploadedfile import UploadedFile


def _taken_number() -> str:
    return _("A withholding slip with this number is already recorded for this customer.")


def suggested_amount(invoice: Invoice) -> Decimal:
    """PPh 23 on the invoice: WITHHOLDING_TAX_RATE percent of its price before PPN."""
    return quantize(invoice.subtotal * Decimal(str(settings.WITHHOLDING_TAX_RATE)) / 100)


def record_slip(
    invoice: Invoice,
    number: str,
    amount: Decimal,
    file: UploadedFile | None,
    by: AbstractBaseUser | None,
) -> WithholdingSlip:
    """Record a withholding slip against an open invoice: at most what the invoice still needs, its number
    once per customer. Settles the account (the invoice is paid when the rest has arrived)."""
    refuse_own(invoice.account, by)
    number = number.strip()
    amount = quantize(Decimal(amount))
    if not number:
        raise BillingError(_("A withholding slip needs its number."))
    if amount <= 0:
        raise BillingError(_("The amount withheld must be more than zero."))
    slip = None
    try:
        with transaction.atomic():
            lock(invoice.account)
            current = with_withheld(Invoice.objects.filter(pk=invoice.pk)).get()
            if current.status != Invoice.Status.OPEN:
                raise BillingError(_("Tax withheld is recorded against open invoices only."))
            due = amount_due(current)
            if amount > due:
                raise BillingError(
                    _("This invoice needs only %(amount)s more.")
                    % {"amount": format_money(due, current.currency)}
                )
            if WithholdingSlip.objects.filter(account_id=invoice.account_id, number=number).exists():
                # Checked before the scan is stored (the unique constraint below is the last word).
                raise BillingError(_taken_number())
            entry = post(
                invoice.account,
                LedgerEntry.Kind.WITHHOLDING,
                amount,
                Message(
                    gettext_noop("Tax withheld (PPh 23) from invoice %(number)s, slip %(slip)s"),
                    {"number": current.number, "slip": number},
                ),
                by=by,
                invoice=current,
            )
            slip = WithholdingSlip(
                account_id=invoice.account_id, invoice=current, number=number, amount=amount, entry=entry,
                recorded_by=by,
            )  # fmt: skip
            if file is not None:
                slip.file = file
            slip.save()
            settle(invoice.account, locked=True)
            signals.withholding_recorded.send(sender=None, account=invoice.account, slip=slip, by=by)
    except BaseException as exc:
        if slip is not None and slip.file and slip.file._committed:  # stored, but its row rolled back
            slip.file.storage.delete(slip.file.name)
        if isinstance(exc, IntegrityError):
            raise BillingError(_taken_number()) from None
        raise
    return slip
