"""The customer's payments through a provider: paying an open invoice ("Pay now"), and the checkout page the
provider sends the customer back to, whose status part updates itself while the payment is pending.

The page never calls the provider: a pending checkout not asked about for a few seconds is handed to a
worker (billing.tasks.refresh_checkout), and the page shows what the database says."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from billing import checkouts, ledger, providers, queue
from billing.errors import BillingError
from billing.models import Checkout, Invoice, Subscription
from billing.money import currency, quantize

REFRESH_TASK = "billing.tasks.refresh_checkout"
# The page polls every 2 s; the provider is asked about a checkout when nobody asked for this long.
REFRESH_EVERY = 5
# One refresh is handed to the workers per answer recorded (checked_at): polls while it waits add none,
# unless it is lost for this long.
REFRESH_PENDING = 60
REFRESH_WHILE = timedelta(minutes=30)
RECENT_CHECKOUTS = 10

# What each built-in provider lets customers pay with (what its hosted page offers in Indonesia). A
# provider from PAYMENT_PROVIDERS may say so itself in an `offers` attribute of the same shape.
OFFERS: dict[str, list[tuple[str, str]]] = {
    "midtrans": [
        (gettext_lazy("Virtual account"), "BCA, BNI, BRI, Mandiri"),
        ("QRIS", ""),
        (gettext_lazy("E-wallets"), "GoPay, ShopeePay"),
    ],
    "xendit": [
        (gettext_lazy("Virtual account"), "BCA, BNI, BRI, Mandiri"),
        ("QRIS", ""),
        (gettext_lazy("E-wallets"), "OVO, DANA, ShopeePay, LinkAja"),
    ],
}


@dataclass(frozen=True)
class ProviderOption:
    """A provider as the payment forms offer it."""

    name: str
    label: str
    offers: list[tuple[str, str]]


def provider_options(available: list[providers.PaymentProvider] | None = None) -> list[ProviderOption]:
    """The configured providers in the order they are offered, with what each lets customers pay with."""
    found = providers.available() if available is None else available
    return [
        ProviderOption(
            name=provider.name,
            label=provider.label or provider.name,
            offers=list(getattr(provider, "offers", None) or OFFERS.get(provider.name, [])),
        )
        for provider in found
    ]


def return_url(request: HttpRequest) -> Callable[[Checkout], str]:
    """Where the provider sends the customer back to: the checkout's own page, as an absolute URL."""
    return lambda checkout: request.build_absolute_uri(reverse("billing-checkout", args=[checkout.pk]))


def recent_checkouts(account) -> list[Checkout]:
    return list(Checkout.objects.filter(account=account).select_related("invoice")[:RECENT_CHECKOUTS])


@login_required
@require_POST
def invoice_pay(request: HttpRequest, pk: int) -> HttpResponse:
    """ "Pay now" on an open invoice: a checkout at the chosen provider (the first one configured when the
    form names none) for what the invoice still needs, and off to its payment page. What goes wrong is
    said on the invoice page, and nothing is changed."""
    invoice = get_object_or_404(Invoice, pk=pk, account=request.user, status=Invoice.Status.OPEN)
    back = reverse("invoice", args=[invoice.pk])
    available = providers.available()
    if not available:
        messages.error(request, _("Online payment is not available: please pay by bank transfer."))
        return redirect(back)
    name = request.POST.get("provider") or available[0].name
    try:
        checkout = checkouts.start(request.user, name, invoice=invoice, return_url=return_url(request))
    except BillingError as exc:  # ProviderUnavailable too
        messages.error(request, exc.message)
        return redirect(back)
    return redirect(checkout.checkout_url)


def _own_checkout(request: HttpRequest, pk: int) -> Checkout:
    return get_object_or_404(Checkout.objects.select_related("invoice"), pk=pk, account=request.user)


def _ask_provider_soon(checkout: Checkout) -> None:
    """Hand a pending checkout nobody asked about lately to a worker, once until the worker has asked; a
    page left open longer than REFRESH_WHILE after the checkout began is left to the periodic poll."""
    if not checkouts.stale(checkout, REFRESH_EVERY) or providers.get(checkout.provider) is None:
        return
    if checkout.created_at < timezone.now() - REFRESH_WHILE:
        return
    asked = checkout.checked_at.isoformat() if checkout.checked_at else "never"
    if cache.add(f"billing:checkout-refresh:{checkout.reference}:{asked}", 1, timeout=REFRESH_PENDING):
        queue.after_commit(REFRESH_TASK, checkout.pk)


def _status_context(request: HttpRequest, checkout: Checkout) -> dict:
    """What the status part of the checkout page shows in each state."""
    context = {"checkout": checkout, "currency": currency(), "provider": _provider_label(checkout.provider)}
    if checkout.status == Checkout.Status.PAID:
        at = checkout.paid_at
        context["balance"] = ledger.balance(request.user)
        # Billing settles the account when the payment is credited: the invoices it paid, and the servers
        # it resumed, carry the same time.
        context["paid_invoices"] = list(
            Invoice.objects.filter(account=request.user, status=Invoice.Status.PAID, paid_at=at).order_by(
                "issued_at", "id"
            )
        )
        context["invoice_still_open"] = bool(
            checkout.invoice and checkout.invoice.status == Invoice.Status.OPEN
        )
        context["resumed"] = Subscription.objects.filter(
            account=request.user, resumed_at__gte=at, resumed_at__lt=at + timedelta(seconds=1)
        ).exists()
    elif checkout.status in (Checkout.Status.EXPIRED, Checkout.Status.FAILED):
        context["retry_provider"] = (
            checkout.provider if providers.get(checkout.provider) else _first_provider_name()
        )
        context["invoice_open"] = bool(checkout.invoice and checkout.invoice.status == Invoice.Status.OPEN)
        context["retry_amount"] = str(quantize(checkout.amount))  # as the form takes it, not localised
    return context


def _provider_label(name: str) -> str:
    provider = providers.get(name)
    if provider is not None:
        return provider.label or provider.name
    return {built_in.name: built_in.label for built_in in providers.BUILT_IN}.get(name, name)


def _first_provider_name() -> str:
    available = providers.available()
    return available[0].name if available else ""


@login_required
def checkout_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The page the provider sends the customer back to: what is paid for, and what became of it."""
    checkout = _own_checkout(request, pk)
    _ask_provider_soon(checkout)
    return render(request, "billing/checkout.html", _status_context(request, checkout))


@login_required
def checkout_status(request: HttpRequest, pk: int) -> HttpResponse:
    """The live part of the checkout page, polled by htmx while the payment is pending."""
    checkout = _own_checkout(request, pk)
    _ask_provider_soon(checkout)
    return render(request, "billing/_checkout_status.html", _status_context(request, checkout))
