"""The customer's billing pages (balance, servers' prices, invoices, payments, top-up), the printable invoice,
and the payment provider's webhook. Every money movement goes through billing's service modules; these
views only check who asks and show what the services say."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from billing import ledger, payments, providers, seller, subjects
from billing.forms import TopUpForm
from billing.models import Invoice, LedgerEntry, Payment, Subscription
from billing.money import CURRENCY_EXPONENTS, currency
from billing.page_context import INVOICE_ROWS, method_label

log = logging.getLogger(__name__)


@dataclass
class ServerCost:
    """What one server costs its owner: its subscription, and the server when it still exists."""

    subscription: Subscription
    server: Any | None  # the server, when it still exists (billing.subjects)


def _server_costs(account) -> list[ServerCost]:
    subscriptions = list(
        Subscription.objects.filter(account=account)
        .exclude(status=Subscription.Status.ENDED)
        .select_related("plan")
        .order_by("label", "started_at")
    )
    servers = subjects.live_subjects(account, (s.reference for s in subscriptions))
    return [
        ServerCost(subscription=subscription, server=servers.get(subscription.reference))
        for subscription in subscriptions
    ]


def _overview_context(request, form: TopUpForm) -> dict:
    account = request.user
    balance = ledger.balance(account)
    costs = _server_costs(account)
    open_invoices = Invoice.objects.filter(account=account, status=Invoice.Status.OPEN)
    next_due = open_invoices.order_by("due_at").values_list("due_at", flat=True).first()
    return {
        "balance": balance,
        "owed": -balance if balance < 0 else Decimal(0),
        "currency": currency(),
        "costs": costs,
        "monthly_total": sum(
            (c.subscription.price for c in costs if c.subscription.cycle == Subscription.Cycle.MONTHLY),
            Decimal(0),
        ),
        "has_hourly": any(c.subscription.cycle == Subscription.Cycle.HOURLY for c in costs),
        "invoices": Invoice.objects.filter(account=account).exclude(status=Invoice.Status.DRAFT)[
            :INVOICE_ROWS
        ],
        "open_count": open_invoices.count(),
        "next_due": next_due,
        "overdue": bool(next_due and next_due < timezone.now()),
        "payments": [
            (payment, method_label(payment.method))
            for payment in Payment.objects.filter(account=account)[:INVOICE_ROWS]
        ],
        # Credits, refunds and adjustments: what changed the balance besides invoices and payments.
        "activity": LedgerEntry.objects.filter(account=account)
        .exclude(kind__in=[LedgerEntry.Kind.CHARGE, LedgerEntry.Kind.PAYMENT])
        .order_by("-created_at", "-id")[:INVOICE_ROWS],
        "form": form,
        "providers": providers.available(),
        "payment": seller.payment_details(seller.profile()),
        "minor_unit": CURRENCY_EXPONENTS.get(currency(), 2) > 0,
    }


@login_required
def billing_overview(request):
    return render(request, "billing/overview.html", _overview_context(request, TopUpForm()))


@login_required
@require_POST
def top_up(request):
    """Start a provider's checkout for the amount and send the customer there; the provider's webhook
    records the payment (billing.views.webhook)."""
    provider = providers.get(request.POST.get("provider", ""))
    if provider is None:
        raise Http404(_("This payment provider is not configured."))
    form = TopUpForm(request.POST)
    if form.is_valid():
        amount = form.cleaned_data["amount"]
        reference = payments.top_up_reference(request.user, provider.name)
        return_url = request.build_absolute_uri(reverse("billing"))
        try:
            url = provider.start_checkout(request.user, amount, reference, return_url)
        except Exception:  # a gateway that is down or refuses: tell the customer, keep the form
            log.exception("checkout with %s failed for account %s", provider.name, request.user.pk)
            form.add_error(
                None,
                _("%(provider)s could not start the payment. Please try again in a moment.")
                % {"provider": provider.label or provider.name},
            )
        else:
            return redirect(url)
    return render(request, "billing/overview.html", _overview_context(request, form))


def render_invoice(request, invoice: Invoice, *, staff_view: bool) -> HttpResponse:
    """The printable invoice: the seller ("From"), the customer ("To"), the lines, and for an open invoice
    how to pay it (the bank account, the amount, the invoice number as the transfer's reference)."""
    lines = list(invoice.lines.all())
    profile = seller.profile()
    return render(
        request,
        "billing/invoice.html",
        {
            "invoice": invoice,
            "lines": lines,
            "show_periods": any(line.period_start for line in lines),
            "seller": profile,
            "seller_name": seller.seller_name(profile),
            "payment": seller.payment_details(profile),
            "staff_view": staff_view,
            "entries": (
                LedgerEntry.objects.filter(invoice=invoice).select_related("created_by") if staff_view else []
            ),
        },
    )


@login_required
def invoice_detail(request, pk: int):
    """A customer's own invoice; anyone else's is a 404, also for staff (they use staff_invoice_detail)."""
    invoice = get_object_or_404(
        Invoice.objects.exclude(status=Invoice.Status.DRAFT).select_related("account"),
        pk=pk,
        account=request.user,
    )
    return render_invoice(request, invoice, staff_view=False)
