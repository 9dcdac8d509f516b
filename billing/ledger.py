"""The account ledger: append-only entries whose sum is the balance (negative: the customer owes).

Money is Decimal, rounded to the currency's precision with ROUND_HALF_UP (billing.money). Issuing an
invoice posts its total as a charge, a payment posts a payment, voiding posts a credit. Every movement of
an account's money holds the account's row lock (lock) until its transaction ends.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.db.models import DecimalField, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from .models import Invoice, LedgerEntry, Payment
from .money import ZERO, currency, quantize
from .texts import Message

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser


def annotate_balance(users: QuerySet) -> QuerySet:
    """`balance_total` on each user of the queryset, as a subquery of its own (a join with the ledger next
    to other aggregates would multiply them)."""
    total = (
        LedgerEntry.objects.filter(account=OuterRef("pk"))
        .order_by()
        .values("account")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    money = DecimalField(max_digits=16, decimal_places=2)
    return users.annotate(
        balance_total=Coalesce(Subquery(total, output_field=money), ZERO, output_field=money)
    )


def balance(account: AbstractBaseUser) -> Decimal:
    """The account's balance, derived from its ledger (negative: the customer owes)."""
    total = LedgerEntry.objects.filter(account=account).aggregate(total=Sum("amount"))["total"]
    return quantize(total or ZERO)


def total_paid(account: AbstractBaseUser) -> Decimal:
    """What the account has paid in the installation's currency: every payment staff recorded or a provider
    confirmed (a payment row exists only once the money is settled)."""
    payments = Payment.objects.filter(account=account, currency=currency())
    return quantize(payments.aggregate(total=Sum("amount"))["total"] or ZERO)


def post(
    account: AbstractBaseUser,
    kind: str,
    amount: Decimal,
    reason: str | Message,
    by: AbstractBaseUser | None = None,
    invoice: Invoice | None = None,
    payment: Payment | None = None,
    at: datetime | None = None,
) -> LedgerEntry:
    """Append one entry to the account's ledger (the caller holds the account's lock). A `Message` reason
    (what billing writes) is shown in each reader's language; a string (what staff typed) as it is."""
    return LedgerEntry.objects.create(
        created_at=at or timezone.now(),
        account=account,
        kind=kind,
        amount=quantize(amount),
        currency=currency(),
        **reason_fields(reason),
        created_by=by,
        invoice=invoice,
        payment=payment,
    )


def reason_fields(reason: str | Message) -> dict:
    """A ledger entry's `reason` (in English, as the column keeps it) and `reason_data` (its message and
    values, billing.texts) for a Message; a string is kept as it is, without data."""
    if isinstance(reason, Message):
        return {"reason": reason.english()[:255], "reason_data": reason.data()}
    return {"reason": reason[:255], "reason_data": {}}


def lock(account: AbstractBaseUser) -> AbstractBaseUser:
    """Serialise money movements of one account on its row. FOR NO KEY UPDATE, the panel's customer lock
    (panel.servers.locks): it serialises with that lock and with itself, and a transaction that locked the
    customer before calling billing does not have to upgrade its lock (which would wait for the key-share
    locks of other transactions' foreign key checks)."""
    return get_user_model().objects.select_for_update(no_key=True).get(pk=account.pk)


def lock_accounts(account_ids: Iterable[int]) -> dict[int, AbstractBaseUser]:
    """`lock` for many accounts in one statement, in id order (as every batch takes them, so that two
    never wait for each other both ways): the accounts by id."""
    accounts = get_user_model().objects.select_for_update(no_key=True).filter(pk__in=list(account_ids))
    return {account.pk: account for account in accounts.order_by("pk")}


def with_withheld(invoices: QuerySet[Invoice]) -> QuerySet[Invoice]:
    """`withheld` on each invoice: the income tax (PPh 23) the customer withheld from it
    (billing.withholding), which settles that part of it."""
    total = (
        LedgerEntry.objects.filter(invoice=OuterRef("pk"), kind=LedgerEntry.Kind.WITHHOLDING)
        .order_by()
        .values("invoice")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    money = DecimalField(max_digits=16, decimal_places=2)
    return invoices.annotate(withheld=Coalesce(Subquery(total, output_field=money), ZERO, output_field=money))
