"""Payment providers: the one interface a gateway (Midtrans or Xendit in Indonesia, Stripe elsewhere)
implements to let customers top up their credit. None is configured by default and none is faked: with
no provider, customers pay by bank transfer and staff record it.

A provider is a class named in settings.PAYMENT_PROVIDERS (dotted path) with:
- `name` (the URL slug of its webhook, /billing/webhooks/<name>/) and `label`;
- `start_checkout(account, amount, reference, return_url) -> str`: where to send the customer;
- `verify_webhook(request) -> ProviderPayment | None`: check the notification's signature with the
  provider's secret and return the confirmed payment, or None for a valid notification that confirms
  nothing (pending, failed); raise InvalidSignature for a forged or malformed one.
The webhook view records confirmed payments with billing.payments.record_payment, idempotent on the
provider's reference, so a notification delivered twice credits once.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from django.conf import settings
from django.utils.module_loading import import_string


class InvalidSignature(Exception):
    """The notification was not signed by the provider."""


@dataclass(frozen=True)
class ProviderPayment:
    account_id: int
    amount: Decimal
    reference: str


class PaymentProvider:
    name = ""
    label = ""

    def start_checkout(self, account, amount: Decimal, reference: str, return_url: str) -> str:
        raise NotImplementedError

    def verify_webhook(self, request) -> ProviderPayment | None:
        raise NotImplementedError


@lru_cache(maxsize=1)
def _load() -> dict[str, PaymentProvider]:
    providers = {}
    for path in settings.PAYMENT_PROVIDERS:
        provider = import_string(path)()
        providers[provider.name] = provider
    return providers


def available() -> list[PaymentProvider]:
    return list(_load().values())


def get(name: str) -> PaymentProvider | None:
    return _load().get(name)
