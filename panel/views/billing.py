"""Billing pages: the customer's balance, servers' prices, invoices, payments and top-up; the printable
invoice; the staff customer page's Billing section (record a payment, adjust, set terms, void); the
overdue list; the admin's read-only billing settings. Every money movement goes through billing.services;
these views only check who asks and show what the services say."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Sum
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_POST

from billing import providers, services
from billing.models import BillingProfile, Invoice, LedgerEntry, Payment, Subscription
from billing.money import CURRENCY_EXPONENTS, currency

from ..forms import AdjustmentForm, BillingTermsForm, RecordPaymentForm, TopUpForm
from ..models import Server, User
from ..roles import admin_required, staff_required
from ..templatetags.billing_tags import money

log = logging.getLogger(__name__)

LEDGER_ROWS = 50
INVOICE_ROWS = 50

METHOD_LABELS = {
    "bank_transfer": gettext_lazy("Bank transfer"),
    "cash": gettext_lazy("Cash"),
    "other": gettext_lazy("Other"),
}


def company_name() -> str:
    return getattr(settings, "BILLING_COMPANY_NAME", "") or _("VPS Panel")


def method_label(method: str) -> str:
    if method in METHOD_LABELS:
        return str(METHOD_LABELS[method])
    provider = providers.get(method)
    return provider.label or provider.name if provider else method


def bank_transfer_instructions() -> str:
    return getattr(settings, "BANK_TRANSFER_INSTRUCTIONS", "") or ""


# The customer's billing page.


@dataclass
class ServerCost:
    """What one server costs its owner: its subscription, and the server when it still exists."""

    subscription: Subscription
    server: Server | None


def _uuids(references) -> list[uuid.UUID]:
    found = []
    for reference in references:
        try:
            found.append(uuid.UUID(str(reference)))
        except ValueError:
            continue
    return found


def _server_costs(account) -> list[ServerCost]:
    subscriptions = list(
        Subscription.objects.filter(account=account)
        .exclude(status=Subscription.Status.ENDED)
        .select_related("plan")
        .order_by("label", "started_at")
    )
    servers = {
        str(server.id): server
        for server in Server.objects.filter(
            owner=account, id__in=_uuids(s.reference for s in subscriptions)
        ).exclude(status=Server.Status.DELETED)
    }
    return [
        ServerCost(subscription=subscription, server=servers.get(subscription.reference))
        for subscription in subscriptions
    ]


def _overview_context(request, form: TopUpForm) -> dict:
    account = request.user
    balance = services.balance(account)
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
        "bank_transfer_instructions": bank_transfer_instructions(),
        "minor_unit": CURRENCY_EXPONENTS.get(currency(), 2) > 0,
    }


@login_required
def billing_overview(request):
    return render(request, "panel/billing/overview.html", _overview_context(request, TopUpForm()))


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
        reference = services.top_up_reference(request.user, provider.name)
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
    return render(request, "panel/billing/overview.html", _overview_context(request, form))


# Invoices.


def _render_invoice(request, invoice: Invoice, *, staff_view: bool):
    lines = list(invoice.lines.all())
    return render(
        request,
        "panel/billing/invoice.html",
        {
            "invoice": invoice,
            "lines": lines,
            "show_periods": any(line.period_start for line in lines),
            "company_name": company_name(),
            "staff_view": staff_view,
            "bank_transfer_instructions": bank_transfer_instructions(),
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
    return _render_invoice(request, invoice, staff_view=False)


@staff_required
def staff_invoice_detail(request, pk: int):
    invoice = get_object_or_404(Invoice.objects.select_related("account"), pk=pk)
    return _render_invoice(request, invoice, staff_view=True)


# The staff customer page's Billing section.


def staff_section_context(request, customer: User, **overrides) -> dict:
    """Everything the Billing section of the staff customer page shows; `overrides` are bound forms with
    errors, or a `notice` (level, text) after an action."""
    profile = BillingProfile.objects.filter(account=customer).first()
    ledger = LedgerEntry.objects.filter(account=customer)
    context = {
        "request": request,
        "customer": customer,
        "balance": services.balance(customer),
        "currency": currency(),
        "ledger": ledger.select_related("created_by", "invoice").order_by("-created_at", "-id")[:LEDGER_ROWS],
        "ledger_count": ledger.count(),
        "invoices": Invoice.objects.filter(account=customer).exclude(status=Invoice.Status.DRAFT)[
            :INVOICE_ROWS
        ],
        "payment_form": RecordPaymentForm(),
        "adjust_form": AdjustmentForm(),
        "terms_form": _terms_form(customer, profile),
        "profile": profile,
        "notice": None,
    }
    context.update(overrides)
    return context


def _terms_form(customer: User, profile: BillingProfile | None, data=None) -> BillingTermsForm:
    return BillingTermsForm(
        data,
        plans=services.plans_on_sale(),
        custom_prices=profile.custom_prices if profile else {},
        initial={"discount_percent": profile.discount_percent if profile else Decimal(0)},
    )


def _section_response(request, customer: User, notice: tuple[str, str] | None = None, **forms):
    """After a staff billing action: htmx swaps the section in place (and the balance in the page
    header); without JavaScript, success goes back to the customer page and errors get a page of their
    own with the section and its form errors."""
    if request.htmx:
        context = staff_section_context(request, customer, notice=notice, **forms)
        return render(request, "panel/billing/_staff_customer_response.html", context)
    if notice and not forms:
        level, text = notice
        getattr(messages, level)(request, text)
        return redirect(_next_url(request) or reverse("staff-customer", args=[customer.pk]) + "#billing")
    context = staff_section_context(request, customer, notice=notice, **forms)
    return render(request, "panel/billing/staff_customer.html", context)


def _next_url(request) -> str | None:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return None


@staff_required
@require_POST
def staff_record_payment(request, pk: int):
    customer = get_object_or_404(User, pk=pk)
    form = RecordPaymentForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            payment, created = services.record_payment(
                customer, data["amount"], data["reference"], method=data["method"], by=request.user
            )
        except services.BillingError as exc:
            form.add_error(None, exc.message)
        else:
            values = {
                "amount": money(payment.amount, payment.currency),
                "reference": payment.reference,
                "date": date_format(timezone.localtime(payment.received_at), "j M Y"),
            }
            if created:
                return _section_response(
                    request,
                    customer,
                    ("success", _("Payment %(reference)s of %(amount)s recorded.") % values),
                )
            return _section_response(
                request,
                customer,
                (
                    "warning",
                    _(
                        "Payment %(reference)s was already recorded (%(amount)s on %(date)s); "
                        "nothing was added."
                    )
                    % values,
                ),
            )
    return _section_response(request, customer, payment_form=form)


@staff_required
@require_POST
def staff_adjust(request, pk: int):
    customer = get_object_or_404(User, pk=pk)
    form = AdjustmentForm(request.POST)
    if form.is_valid():
        try:
            entry = services.adjust(
                customer, form.cleaned_data["amount"], form.cleaned_data["reason"], by=request.user
            )
        except services.BillingError as exc:
            form.add_error(None, exc.message)
        else:
            return _section_response(
                request,
                customer,
                (
                    "success",
                    _("The balance was adjusted by %(amount)s.")
                    % {"amount": money(entry.amount, entry.currency)},
                ),
            )
    return _section_response(request, customer, adjust_form=form)


@staff_required
@require_POST
def staff_billing_terms(request, pk: int):
    customer = get_object_or_404(User, pk=pk)
    profile = BillingProfile.objects.filter(account=customer).first()
    form = _terms_form(customer, profile, request.POST)
    if form.is_valid():
        # Terms are no money movement: they price the next subscription or plan change.
        try:
            services.set_billing_terms(
                customer,
                form.cleaned_data["discount_percent"],
                form.custom_prices(profile.custom_prices if profile else {}),
                by=request.user,
            )
        except services.BillingError as exc:
            form.add_error(None, exc.message)
        else:
            return _section_response(
                request,
                customer,
                ("success", _("The billing terms of %(email)s were saved.") % {"email": customer.email}),
            )
    return _section_response(request, customer, terms_form=form)


@staff_required
@require_POST
def staff_void_invoice(request, pk: int):
    invoice = get_object_or_404(Invoice.objects.select_related("account"), pk=pk)
    try:
        services.void_invoice(invoice, by=request.user)
    except services.BillingError as exc:
        notice = ("error", exc.message)
    else:
        notice = (
            "success",
            _("Invoice %(number)s was voided; its amount was credited.") % {"number": invoice.number},
        )
    return _section_response(request, invoice.account, notice)


# Overdue invoices (staff) and the billing settings (admins).


@dataclass
class OverdueRow:
    invoice: Invoice
    days: int
    suspended: bool
    suspend_on: datetime
    terminate_on: datetime


@staff_required
def overdue(request):
    now = timezone.now()
    invoices = list(
        Invoice.objects.filter(status=Invoice.Status.OPEN, due_at__lt=now)
        .select_related("account")
        .order_by("due_at", "id")
    )
    suspended = set(
        Subscription.objects.filter(
            account__in={invoice.account_id for invoice in invoices}, status=Subscription.Status.SUSPENDED
        ).values_list("account_id", flat=True)
    )
    rows = [
        OverdueRow(
            invoice=invoice,
            days=(now - invoice.due_at).days,
            suspended=invoice.account_id in suspended,
            suspend_on=invoice.due_at + timedelta(days=settings.BILLING_GRACE_DAYS),
            terminate_on=invoice.due_at + timedelta(days=settings.BILLING_TERMINATE_DAYS),
        )
        for invoice in invoices
    ]
    totals = (
        Invoice.objects.filter(pk__in=[row.invoice.pk for row in rows])
        .values("currency")
        .annotate(total=Sum("total"), count=Count("id"))
        .order_by("currency")
    )
    return render(
        request,
        "panel/billing/overdue.html",
        {
            "rows": rows,
            "totals": totals,
            "accounts": len({row.invoice.account_id for row in rows}),
            "grace_days": settings.BILLING_GRACE_DAYS,
            "terminate_days": settings.BILLING_TERMINATE_DAYS,
            "grace": _days(settings.BILLING_GRACE_DAYS),
            "terminate": _days(settings.BILLING_TERMINATE_DAYS),
        },
    )


@dataclass
class Setting:
    label: str
    value: str
    env: str
    help: str


def _days(count: int) -> str:
    return ngettext("%(count)d day", "%(count)d days", count) % {"count": count}


def _settings_rows() -> list[Setting]:
    code = currency()
    places = CURRENCY_EXPONENTS.get(code, 2)
    policy = settings.BILLING_ORDER_POLICY
    return [
        Setting(
            _("Currency"),
            code,
            "PANEL_CURRENCY",
            (
                _("Every price, invoice and payment is in this currency; it has no minor unit.")
                if places == 0
                else _("Every price, invoice and payment is in this currency, with %(places)s decimals.")
                % {"places": places}
            )
            + " "
            + _("Amounts are rounded half up to that precision."),
        ),
        Setting(
            _("Order policy"),
            _("Prepaid credit") if policy == "prepaid" else _("Invoice first"),
            "BILLING_ORDER_POLICY",
            _(
                "Invoice first: a new server is created at once and its first month invoiced. Prepaid: an "
                "order needs enough balance for the first month, else it is refused and nothing is created."
            ),
        ),
        Setting(
            _("Payment due"),
            _days(settings.INVOICE_DUE_DAYS),
            "INVOICE_DUE_DAYS",
            _("How long after it is issued an invoice is due."),
        ),
        Setting(
            _("Reminder"),
            _days(settings.INVOICE_REMIND_DAYS),
            "INVOICE_REMIND_DAYS",
            _("The customer is reminded by email this long before an open invoice is due."),
        ),
        Setting(
            _("Grace period"),
            _days(settings.BILLING_GRACE_DAYS),
            "BILLING_GRACE_DAYS",
            _(
                "This long after the due date, the servers of an account with an unpaid invoice are "
                "suspended (stopped; actions refused). A payment that covers what is due unsuspends "
                "them at once."
            ),
        ),
        Setting(
            _("Termination"),
            _days(settings.BILLING_TERMINATE_DAYS),
            "BILLING_TERMINATE_DAYS",
            _(
                "This long after the due date, the servers of an account that still has not paid are deleted "
                "with their data. The customer is warned by email %(warning)s before."
            )
            % {"warning": _days(settings.BILLING_TERMINATION_WARNING_DAYS)},
        ),
        Setting(
            _("Downgrade credit"),
            _("Yes") if settings.PRORATE_DOWNGRADE_CREDIT else _("No"),
            "PRORATE_DOWNGRADE_CREDIT",
            _(
                "Upgrades are invoiced pro rata for the rest of the paid month. With this on, a downgrade "
                "credits the difference for the rest of the month; with it off, nothing is credited."
            ),
        ),
        Setting(
            _("Seller name"),
            company_name(),
            "BILLING_COMPANY_NAME",
            _("The name printed at the top of every invoice."),
        ),
    ]


@admin_required
def billing_settings(request):
    gateways = [
        (provider, request.build_absolute_uri(reverse("billing-webhook", args=[provider.name])))
        for provider in providers.available()
    ]
    return render(
        request,
        "panel/billing/settings.html",
        {
            "rows": _settings_rows(),
            "gateways": gateways,
            "bank_transfer_instructions": bank_transfer_instructions(),
        },
    )
