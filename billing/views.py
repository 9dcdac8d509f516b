"""The customer's billing pages: the balance and how long it lasts, servers' prices, invoices, payments and
checkouts, topping up through a payment provider, the billing details invoices are made out to; and the
printable invoice. Every money movement goes through billing's service modules; these views only check
who asks and show what the services say. Paying an invoice and the checkout page: billing.checkout_views."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Min
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from billing import addons, buyer, checkouts, document_views, ledger, providers, runway, seller, subjects
from billing.checkout_views import provider_options, recent_checkouts, return_url
from billing.errors import BillingError
from billing.forms import BillingDetailsForm, TopUpForm
from billing.models import Invoice, LedgerEntry, Payment, Subscription, SubscriptionAddon
from billing.money import CURRENCY_EXPONENTS, currency, quantize
from billing.page_context import INVOICE_ROWS, method_label, with_labels


@dataclass
class ServerCost:
    """What one server costs its owner: its subscription, its running add-ons (billing.addons), and the
    server when it still exists."""

    subscription: Subscription
    server: Any | None  # the server, when it still exists (billing.subjects)
    addons: list[SubscriptionAddon] = field(default_factory=list)

    @property
    def monthly(self) -> Decimal:
        """What a monthly server costs a month with its add-ons (0 for an hourly one)."""
        if self.subscription.cycle != Subscription.Cycle.MONTHLY:
            return Decimal(0)
        return self.subscription.price + sum((addon.price for addon in self.addons), Decimal(0))


def _server_costs(account) -> list[ServerCost]:
    subscriptions = list(
        Subscription.objects.filter(account=account)
        .exclude(status=Subscription.Status.ENDED)
        .select_related("plan")
        .order_by("label", "started_at")
    )
    servers = subjects.live_subjects(account, (s.reference for s in subscriptions))
    running = addons.running_addons(subscriptions)
    return [
        ServerCost(
            subscription=subscription,
            server=servers.get(subscription.reference),
            addons=running.get(subscription.pk, []),
        )
        for subscription in subscriptions
    ]


@dataclass(frozen=True)
class QuickAmount:
    amount: Decimal
    label: str


# Round amounts offered besides what is owed and a month of the servers, as multiples of the smallest top-up.
QUICK_MULTIPLES = (10, 25, 50, 100)


def quick_amounts(owed: Decimal, monthly: Decimal) -> list[QuickAmount]:
    """The amounts the top-up form offers with one click: everything owed, a month of the servers, and a few
    round ones; each within the top-up limits, none twice."""
    low, high = checkouts.limits()
    candidates = [(owed, _("Everything owed")), (monthly, _("One month"))]
    candidates += [(low * multiple, "") for multiple in QUICK_MULTIPLES]
    seen, found = set(), []
    for amount, label in candidates:
        amount = quantize(amount)
        if low <= amount <= high and amount not in seen:
            seen.add(amount)
            found.append(QuickAmount(amount, label))
    return found[:5]


def _overview_context(request, *, form: TopUpForm | None = None, details_form=None) -> dict:
    account = request.user
    balance = ledger.balance(account)
    costs = _server_costs(account)
    open_invoices = Invoice.objects.filter(account=account, status=Invoice.Status.OPEN)
    # How many are open and the earliest due date, in one query (Min skips a missing date as the ordered
    # first() did, which puts NULLs last).
    open_summary = open_invoices.aggregate(count=Count("id"), next_due=Min("due_at"))
    next_due = open_summary["next_due"]
    available = providers.available()
    owed = -balance if balance < 0 else Decimal(0)
    monthly_total = sum((c.monthly for c in costs), Decimal(0))
    with_labels((c.subscription for c in costs), "cycle")
    low, high = checkouts.limits()
    if form is None:
        # A quick amount's link (?amount=) fills the form without JavaScript; else what is owed.
        initial = {"amount": request.GET["amount"]} if request.GET.get("amount") else {}
        if not initial and owed and low <= quantize(owed) <= high:
            initial["amount"] = quantize(owed)
        form = TopUpForm(initial=initial, providers=available)
    profile = buyer.profile_of(account)
    if details_form is None:
        details_form = BillingDetailsForm(
            initial={name: getattr(profile, name) for name in buyer.FIELDS} if profile else None
        )
    return {
        "balance": balance,
        "owed": owed,
        "currency": currency(),
        "costs": costs,
        "monthly_total": monthly_total,
        "has_hourly": any(c.subscription.cycle == Subscription.Cycle.HOURLY for c in costs),
        "runway": runway.days_left(
            balance, (c.subscription for c in costs), [addon for c in costs for addon in c.addons]
        ),
        "invoices": with_labels(
            Invoice.objects.filter(account=account).exclude(status=Invoice.Status.DRAFT)[:INVOICE_ROWS],
            "status",
        ),
        "open_count": open_summary["count"],
        "next_due": next_due,
        "overdue": bool(next_due and next_due < timezone.now()),
        "payments": [
            (payment, method_label(payment.method))
            for payment in Payment.objects.filter(account=account)[:INVOICE_ROWS]
        ],
        # Credits, refunds and adjustments: what changed the balance besides invoices and payments.
        "activity": with_labels(
            LedgerEntry.objects.filter(account=account)
            .exclude(kind__in=[LedgerEntry.Kind.CHARGE, LedgerEntry.Kind.PAYMENT])
            .order_by("-created_at", "-id")[:INVOICE_ROWS],
            "kind",
        ),
        "checkouts": with_labels(recent_checkouts(account), "status"),
        "form": form,
        "providers": provider_options(available),
        "quick_amounts": quick_amounts(owed, monthly_total),
        "top_up_min": low,
        "top_up_max": high,
        "details_form": details_form,
        "profile": profile,
        "payment": seller.payment_details(seller.profile()),
        "minor_unit": CURRENCY_EXPONENTS.get(currency(), 2) > 0,
    }


@login_required
def billing_overview(request):
    return render(request, "billing/overview.html", _overview_context(request))


@login_required
@require_POST
def top_up(request):
    """Start a checkout at the chosen provider for the amount and send the customer to its payment page; the
    provider sends them back to the checkout's page. A refusal is a form error and changes nothing."""
    available = providers.available()
    if not available:  # a form drawn while a provider was configured
        messages.error(request, _("Online payment is not available: please pay by bank transfer."))
        return redirect(reverse("billing") + "#bank-transfer")
    form = TopUpForm(request.POST, providers=available)
    if form.is_valid():
        try:
            checkout = checkouts.start(
                request.user,
                form.cleaned_data["provider"],
                amount=form.cleaned_data["amount"],
                return_url=return_url(request),
            )
        except BillingError as exc:  # ProviderUnavailable too: nothing was charged
            form.add_error(None, exc.message)
        else:
            return redirect(checkout.checkout_url)
    return render(request, "billing/overview.html", _overview_context(request, form=form))


@login_required
@require_POST
def billing_details(request):
    """Save who the customer's invoices are made out to; new invoices carry it, issued ones keep theirs."""
    form = BillingDetailsForm(request.POST)
    if form.is_valid():
        try:
            buyer.save_details(request.user, form.cleaned_data)
        except BillingError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(
                request, _("Your billing details were saved. New invoices are made out to them.")
            )
            return redirect(reverse("billing") + "#billing-details")
    return render(request, "billing/overview.html", _overview_context(request, details_form=form))


def render_invoice(request, invoice: Invoice, *, staff_view: bool) -> HttpResponse:
    """The invoice page (billing.document_views.invoice_page): the seller and the buyer with their tax IDs,
    the lines and the tax breakdown, the credit notes and the PDF; for an open invoice how to pay it (online,
    or by bank transfer with the invoice number as the reference); for staff the ledger entries and the
    withholding slip and credit note forms."""
    return document_views.invoice_page(request, invoice, staff_view=staff_view)


@login_required
def invoice_detail(request, pk: int):
    """A customer's own invoice; anyone else's is a 404, also for staff (they use staff_invoice_detail)."""
    invoice = get_object_or_404(
        Invoice.objects.exclude(status=Invoice.Status.DRAFT).select_related("account"),
        pk=pk,
        account=request.user,
    )
    return render_invoice(request, invoice, staff_view=False)
