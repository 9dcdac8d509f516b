"""Billing services used by the panel. Billing knows customers as users and servers as subscriptions."""

from decimal import Decimal

from django.db.models import Sum

from .models import LedgerEntry, Plan
from .money import quantize


def balance(account) -> Decimal:
    """The account's balance, derived from its ledger."""
    total = LedgerEntry.objects.filter(account=account).aggregate(total=Sum("amount"))["total"]
    return quantize(total or Decimal("0"))


def plans_on_sale():
    return Plan.objects.filter(is_active=True)
