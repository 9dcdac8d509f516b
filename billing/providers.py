"""Payment providers: Midtrans (Snap) and Xendit (Invoices), the gateways Indonesian customers pay through
by virtual account (BCA, BNI, BRI, Mandiri), QRIS and e-wallets, spoken to through their documented HTTP
APIs. A provider is on when its secret is set (settings: MIDTRANS_*, XENDIT_*); with none, customers pay by
bank transfer and staff record it. More providers: dotted paths in PAYMENT_PROVIDERS.

A provider does three things, each a plain call with no state of its own (billing.checkouts drives them):
- `create_checkout`: ask the provider for a payment page for one checkout (our `reference` is its order
  id) and return where to send the customer;
- `verify_notification`: check a notification's signature or token in constant time and return the
  reference it names; InvalidSignature for anything not from the provider;
- `fetch_status`: ask the provider's status API what became of a checkout. Nothing is credited on the word
  of a notification alone: it only says when to ask.

The base URLs are settings so that tests point them at a local server that speaks the same API
(tests/payment_provider_server.py); nothing here knows that server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

import requests
from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from django.http import HttpRequest

    from .models import Checkout


class InvalidSignature(Exception):
    """The notification was not signed by the provider (or is not one of its notifications)."""


class ProviderError(Exception):
    """The provider could not be reached, or refused the request; the message says which."""


# What a provider's status API says of a checkout, in our words.
PENDING, PAID, EXPIRED, FAILED = "pending", "paid", "expired", "failed"


@dataclass(frozen=True)
class CreatedCheckout:
    provider_id: str
    url: str
    expires_at: datetime | None = None


@dataclass(frozen=True)
class ProviderStatus:
    state: str  # PENDING, PAID, EXPIRED or FAILED
    amount: Decimal | None = None
    currency: str = ""
    transaction_id: str = ""
    provider_id: str = ""
    detail: str = ""  # the provider's own word for it ("settlement", "EXPIRED")


@dataclass(frozen=True)
class CheckoutRequest:
    """What a provider is told about one checkout."""

    reference: str
    amount: Decimal
    currency: str
    email: str
    name: str
    description: str
    return_url: str
    expires_at: datetime


class PaymentProvider:
    name = ""
    label = ""

    @classmethod
    def configured(cls) -> bool:
        return True

    def create_checkout(self, order: CheckoutRequest) -> CreatedCheckout:
        raise NotImplementedError

    def verify_notification(self, request: HttpRequest) -> str:
        raise NotImplementedError

    def fetch_status(self, checkout: Checkout) -> ProviderStatus:
        raise NotImplementedError


def _basic(secret: str) -> str:
    """HTTP basic authorisation with the secret as user name and no password, as both providers want."""
    return "Basic " + base64.b64encode(f"{secret}:".encode()).decode()


def _call(method: str, url: str, secret: str, body: dict | None = None) -> tuple[int, dict]:
    """One JSON call to a provider: its status code and JSON body; ProviderError when it cannot be made or
    does not answer JSON."""
    try:
        response = requests.request(
            method,
            url,
            json=body,
            headers={"Authorization": _basic(secret), "Accept": "application/json"},
            timeout=settings.PAYMENT_PROVIDER_TIMEOUT,
        )
    except requests.RequestException as exc:
        raise ProviderError(f"{method} {url}: {exc.__class__.__name__}") from exc
    try:
        data = response.json()
    except ValueError as exc:
        raise ProviderError(f"{method} {url}: HTTP {response.status_code}, not JSON") from exc
    if not isinstance(data, dict | list):
        raise ProviderError(f"{method} {url}: unexpected answer")
    return response.status_code, data


def _decimal(value) -> Decimal | None:
    try:
        return Decimal(str(value)) if value not in (None, "") else None
    except InvalidOperation:
        return None


def _json_body(request: HttpRequest) -> dict:
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidSignature("not JSON") from exc
    if not isinstance(data, dict):
        raise InvalidSignature("not a JSON object")
    return data


class Midtrans(PaymentProvider):
    """Midtrans Snap: a checkout is a Snap transaction (POST /snap/v1/transactions) whose redirect_url is the
    payment page; its order id is our reference. Notifications (HTTP POST of JSON) carry `signature_key`,
    SHA-512 of order_id + status_code + gross_amount + the server key. The Core API's
    GET /v2/{order_id}/status says what became of it."""

    name = "midtrans"
    label = "Midtrans"

    @classmethod
    def configured(cls) -> bool:
        return bool(settings.MIDTRANS_SERVER_KEY)

    @property
    def key(self) -> str:
        return settings.MIDTRANS_SERVER_KEY

    @property
    def snap_url(self) -> str:
        default = (
            "https://app.midtrans.com"
            if settings.MIDTRANS_IS_PRODUCTION
            else "https://app.sandbox.midtrans.com"
        )
        return (settings.MIDTRANS_SNAP_URL or default).rstrip("/")

    @property
    def api_url(self) -> str:
        default = (
            "https://api.midtrans.com"
            if settings.MIDTRANS_IS_PRODUCTION
            else "https://api.sandbox.midtrans.com"
        )
        return (settings.MIDTRANS_API_URL or default).rstrip("/")

    def create_checkout(self, order: CheckoutRequest) -> CreatedCheckout:
        minutes = max(1, int((order.expires_at - timezone.now()).total_seconds() // 60))
        start = timezone.localtime(timezone.now(), timezone.get_fixed_timezone(7 * 60))
        if order.amount != order.amount.to_integral_value():
            # Snap's gross_amount is an integer (rupiah have no minor unit at Midtrans).
            raise ProviderError(f"Midtrans takes whole amounts only, not {order.amount}")
        gross = int(order.amount)
        body = {
            "transaction_details": {"order_id": order.reference, "gross_amount": gross},
            "item_details": [
                {"id": order.reference, "price": gross, "quantity": 1, "name": order.description[:50]}
            ],
            "customer_details": {"first_name": order.name[:255], "email": order.email},
            "callbacks": {"finish": order.return_url},
            "expiry": {
                "start_time": start.strftime("%Y-%m-%d %H:%M:%S +0700"),
                "unit": "minutes",
                "duration": minutes,
            },
        }
        status, data = _call("POST", f"{self.snap_url}/snap/v1/transactions", self.key, body)
        if status not in (200, 201) or not isinstance(data, dict) or not data.get("redirect_url"):
            messages = data.get("error_messages") if isinstance(data, dict) else None
            raise ProviderError(f"Midtrans refused the transaction: HTTP {status} {messages or ''}".strip())
        return CreatedCheckout(
            provider_id=str(data.get("token", "")), url=data["redirect_url"], expires_at=order.expires_at
        )

    def verify_notification(self, request: HttpRequest) -> str:
        data = _json_body(request)
        parts = [data.get("order_id"), data.get("status_code"), data.get("gross_amount")]
        signature = data.get("signature_key")
        if not all(isinstance(part, str) and part for part in parts) or not isinstance(signature, str):
            raise InvalidSignature("missing fields")
        expected = hashlib.sha512(("".join(parts) + self.key).encode()).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.lower().encode()):
            raise InvalidSignature("signature_key does not match")
        return data["order_id"]

    def fetch_status(self, checkout: Checkout) -> ProviderStatus:
        status, data = _call(
            "GET", f"{self.api_url}/v2/{quote(checkout.reference, safe='')}/status", self.key
        )
        if not isinstance(data, dict):
            raise ProviderError("Midtrans status: unexpected answer")
        code = str(data.get("status_code", status))
        if status == 404 or (code == "404" and status < 400):
            # No payment method chosen yet: Snap makes the transaction when the customer picks one.
            return ProviderStatus(state=PENDING, detail="not found")
        # A transaction found answers its status, with its own status_code in the body (407: expired).
        word = data.get("transaction_status")
        if status in (400, 401, 403) or status >= 500 or not isinstance(word, str) or not word:
            raise ProviderError(f"Midtrans status: HTTP {status}, status_code {code}")
        fraud = str(data.get("fraud_status", "accept") or "accept")
        if word == "settlement" or (word == "capture" and fraud == "accept"):
            state = PAID
        elif word == "expire":
            state = EXPIRED
        elif word in ("cancel", "deny", "failure", "refund", "partial_refund", "chargeback"):
            # A refund or chargeback of a payment never credited here: nothing arrived to credit.
            state = FAILED
        else:  # pending, authorize, a card capture under review
            state = PENDING
        return ProviderStatus(
            state=state,
            amount=_decimal(data.get("gross_amount")),
            currency=str(data.get("currency", "IDR") or "IDR"),
            transaction_id=str(data.get("transaction_id", "")),
            detail=word,
        )


class Xendit(PaymentProvider):
    """Xendit Invoices: a checkout is an invoice (POST /v2/invoices) whose invoice_url is the payment page;
    its external_id is our reference. Notifications carry the `x-callback-token` header, the account's
    callback verification token. GET /v2/invoices/{id} says what became of it (GET
    /v2/invoices?external_id= finds one whose id we never learnt). An invoice is paid once, so its id is
    the payment's reference (the invoice's answers document no payment id of their own)."""

    name = "xendit"
    label = "Xendit"

    @classmethod
    def configured(cls) -> bool:
        return bool(settings.XENDIT_SECRET_KEY)

    @property
    def key(self) -> str:
        return settings.XENDIT_SECRET_KEY

    @property
    def api_url(self) -> str:
        return (settings.XENDIT_API_URL or "https://api.xendit.co").rstrip("/")

    def create_checkout(self, order: CheckoutRequest) -> CreatedCheckout:
        seconds = max(60, int((order.expires_at - timezone.now()).total_seconds()))
        amount = (
            int(order.amount) if order.amount == order.amount.to_integral_value() else float(order.amount)
        )
        body = {
            "external_id": order.reference,
            "amount": amount,
            "payer_email": order.email,
            "description": order.description,
            "invoice_duration": seconds,
            "success_redirect_url": order.return_url,
            "failure_redirect_url": order.return_url,
            "currency": order.currency,
            "customer": {"given_names": order.name[:255], "email": order.email},
        }
        status, data = _call("POST", f"{self.api_url}/v2/invoices", self.key, body)
        if (
            status not in (200, 201)
            or not isinstance(data, dict)
            or not data.get("invoice_url")
            or not data.get("id")
        ):
            code = data.get("error_code") if isinstance(data, dict) else ""
            raise ProviderError(f"Xendit refused the invoice: HTTP {status} {code or ''}".strip())
        expires = parse_datetime(str(data.get("expiry_date", "")))
        if expires is None or timezone.is_naive(
            expires
        ):  # Xendit gives UTC with its "Z"; anything else: ours
            expires = order.expires_at
        return CreatedCheckout(provider_id=str(data["id"]), url=data["invoice_url"], expires_at=expires)

    def verify_notification(self, request: HttpRequest) -> str:
        token = settings.XENDIT_CALLBACK_TOKEN
        given = request.headers.get("x-callback-token", "")
        if not token or not hmac.compare_digest(token.encode(), given.encode()):
            raise InvalidSignature("x-callback-token does not match")
        data = _json_body(request)
        reference = data.get("external_id")
        if not isinstance(reference, str) or not reference:
            raise InvalidSignature("no external_id")
        return reference

    def fetch_status(self, checkout: Checkout) -> ProviderStatus:
        if checkout.provider_id:
            invoice_id = quote(checkout.provider_id, safe="")
            status, data = _call("GET", f"{self.api_url}/v2/invoices/{invoice_id}", self.key)
        else:  # the invoice was made but its answer never reached us
            query = urlencode({"external_id": checkout.reference})
            status, found = _call("GET", f"{self.api_url}/v2/invoices?{query}", self.key)
            if status == 404 or (isinstance(found, list) and not found):
                return ProviderStatus(state=PENDING, detail="not found")
            data = _chosen(found) if isinstance(found, list) else found
        if status >= 400 or not isinstance(data, dict):
            raise ProviderError(f"Xendit invoice status: HTTP {status}")
        word = str(data.get("status", "")).upper()
        state = {"PAID": PAID, "SETTLED": PAID, "EXPIRED": EXPIRED}.get(word, PENDING)
        paid = (
            data.get("paid_amount")
            if state == PAID and data.get("paid_amount") is not None
            else data.get("amount")
        )
        return ProviderStatus(
            state=state,
            amount=_decimal(paid),
            currency=str(data.get("currency", "IDR") or "IDR"),
            transaction_id=str(data.get("id", "")),
            provider_id=str(data.get("id", "")),
            detail=word,
        )


def _chosen(invoices: list) -> dict | None:
    """Of the invoices Xendit lists for one external_id (it does not require them to be unique), the one
    that was paid, else the first."""
    found = [invoice for invoice in invoices if isinstance(invoice, dict)]
    paid = [i for i in found if str(i.get("status", "")).upper() in ("PAID", "SETTLED")]
    return (paid or found or [None])[0]


BUILT_IN: tuple[type[PaymentProvider], ...] = (Midtrans, Xendit)


def available() -> list[PaymentProvider]:
    """The providers customers may pay with now, in the order they are offered."""
    found = [cls() for cls in BUILT_IN if cls.configured()]
    found += [import_string(path)() for path in settings.PAYMENT_PROVIDERS]
    return [provider for provider in found if provider.configured()]


def get(name: str) -> PaymentProvider | None:
    return next((provider for provider in available() if provider.name == name), None)
