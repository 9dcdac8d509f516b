"""Billing pages for staff and admins: an invoice as staff see it, the staff customer page's Billing actions
(record a payment, adjust, set terms, void), the overdue list, matching a bank transfer to open invoices by
its amount, and the billing settings (the environment's, read-only; the seller's profile and the add-on
prices, which admins edit and other staff only see)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import ngettext, pgettext
from django.views.decorators.http import require_http_methods, require_POST

from billing import addons, errors, invoices, payments, prices, providers, seller, transfer
from billing.forms import (
    AddonPricesForm,
    AdjustmentForm,
    BankTransferLookupForm,
    RecordPaymentForm,
    SellerProfileForm,
)
from billing.models import AddonKind, BillingProfile, Invoice, Subscription
from billing.money import CURRENCY_EXPONENTS, currency, format_money, quantize
from billing.page_context import staff_section_context, terms_form
from billing.views import render_invoice
from panel.roles import staff_required


@staff_required
def staff_invoice_detail(request, pk: int):
    invoice = get_object_or_404(Invoice.objects.select_related("account"), pk=pk)
    return render_invoice(request, invoice, staff_view=True)


def _section_response(request, customer, notice: tuple[str, str] | None = None, **forms):
    """After a staff billing action: htmx swaps the section in place (and the balance in the page
    header); without JavaScript, success goes back to the customer page and errors get a page of their
    own with the section and its form errors."""
    if request.htmx:
        context = staff_section_context(request, customer, notice=notice, **forms)
        return render(request, "billing/_staff_customer_response.html", context)
    if notice and not forms:
        level, text = notice
        getattr(messages, level)(request, text)
        return redirect(_next_url(request) or reverse("staff-customer", args=[customer.pk]) + "#billing")
    context = staff_section_context(request, customer, notice=notice, **forms)
    return render(request, "billing/staff_customer.html", context)


def _next_url(request) -> str | None:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return None


@staff_required
@require_POST
def staff_record_payment(request, pk: int):
    customer = get_object_or_404(get_user_model(), pk=pk)
    form = RecordPaymentForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            payment, created = payments.record_payment(
                customer, data["amount"], data["reference"], method=data["method"], by=request.user
            )
        except errors.BillingError as exc:
            form.add_error(None, exc.message)
        else:
            values = {
                "amount": format_money(payment.amount, payment.currency),
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
    customer = get_object_or_404(get_user_model(), pk=pk)
    form = AdjustmentForm(request.POST)
    if form.is_valid():
        try:
            entry = payments.adjust(
                customer, form.cleaned_data["amount"], form.cleaned_data["reason"], by=request.user
            )
        except errors.BillingError as exc:
            form.add_error(None, exc.message)
        else:
            return _section_response(
                request,
                customer,
                (
                    "success",
                    _("The balance was adjusted by %(amount)s.")
                    % {"amount": format_money(entry.amount, entry.currency)},
                ),
            )
    return _section_response(request, customer, adjust_form=form)


@staff_required
@require_POST
def staff_billing_terms(request, pk: int):
    customer = get_object_or_404(get_user_model(), pk=pk)
    profile = BillingProfile.objects.filter(account=customer).first()
    form = terms_form(customer, profile, request.POST)
    if form.is_valid():
        # Terms are no money movement: they price the next subscription or plan change.
        try:
            prices.set_billing_terms(
                customer,
                form.cleaned_data["discount_percent"],
                form.custom_prices(profile.custom_prices if profile else {}),
                by=request.user,
            )
        except errors.BillingError as exc:
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
        invoices.void_invoice(invoice, by=request.user)
    except errors.BillingError as exc:
        notice = ("error", exc.message)
    else:
        notice = (
            "success",
            pgettext("invoice action", "Invoice %(number)s was voided; its amount was credited.")
            % {"number": invoice.number},
        )
    return _section_response(request, invoice.account, notice)


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
    overdue_invoices = list(
        Invoice.objects.filter(status=Invoice.Status.OPEN, due_at__lt=now)
        .select_related("account")
        .order_by("due_at", "id")
    )
    suspended = set(
        Subscription.objects.filter(
            account__in={invoice.account_id for invoice in overdue_invoices},
            status=Subscription.Status.SUSPENDED,
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
        for invoice in overdue_invoices
    ]
    totals = (
        Invoice.objects.filter(pk__in=[row.invoice.pk for row in rows])
        .values("currency")
        .annotate(total=Sum("total"), count=Count("id"))
        .order_by("currency")
    )
    return render(
        request,
        "billing/overdue.html",
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


# The most open invoices the transfer lookup lists (an amount shared by more needs the unique codes).
TRANSFER_MATCHES = 50


@staff_required
def bank_transfers(request: HttpRequest) -> HttpResponse:
    """Match a bank transfer: the open invoices whose amount to transfer (with its unique code) or whose
    total is the amount staff read on a bank statement, each with its customer and where to record the
    payment. Looking up changes nothing."""
    form = BankTransferLookupForm(request.GET if "amount" in request.GET else None)
    matches = None
    if form.is_bound and form.is_valid():
        matches = list(transfer.find_by_amount(form.cleaned_data["amount"])[:TRANSFER_MATCHES])
    return render(
        request,
        "billing/bank_transfers.html",
        {
            "form": form,
            "matches": matches,
            "amount": form.cleaned_data.get("amount") if matches is not None else None,
            "currency": currency(),
            "codes_on": seller.profile().unique_amount_codes,
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


def _settings_rows(profile) -> list[Setting]:
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
            seller.seller_name(profile),
            "BILLING_COMPANY_NAME",
            _("The name printed at the top of every invoice when the seller's legal name below is blank."),
        ),
    ]


@staff_required
@require_http_methods(["GET", "POST"])
def billing_settings(request: HttpRequest) -> HttpResponse:
    """The billing settings: the environment's (read-only), the seller's profile and the add-on prices,
    which admins edit here and other staff only see."""
    profile = seller.profile()
    can_edit = request.user.is_panel_admin
    version = seller.version_of(profile)
    form = SellerProfileForm(instance=profile, initial={"version": version}) if can_edit else None
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied
        form = SellerProfileForm(request.POST)
        if form.is_valid():
            try:
                changed = seller.save_profile(
                    {name: form.cleaned_data[name] for name in (*seller.FIELDS, *seller.FLAGS)},
                    by=request.user,
                    # The version the form was drawn from (a post without the field is not checked).
                    version=form.cleaned_data["version"] if "version" in request.POST else None,
                )
            except seller.ChangedMeanwhile:
                messages.error(
                    request,
                    _(
                        "Another admin changed these details while you were editing them; nothing was saved. "
                        "The form shows their version now: make your change again."
                    ),
                )
                return redirect(reverse("billing-settings") + "#seller")
            if changed:
                messages.success(request, _("The seller's details and payment instructions were saved."))
            else:
                messages.info(request, _("Nothing was changed."))
            return redirect(reverse("billing-settings") + "#seller")
        messages.error(request, _("The seller's details were not saved: please correct the errors below."))
    return _render_settings(request, profile, seller_form=form)


def _render_settings(request: HttpRequest, profile, *, seller_form=None, addon_form=None) -> HttpResponse:
    can_edit = request.user.is_panel_admin
    gateways = [
        (provider, request.build_absolute_uri(reverse("billing-webhook", args=[provider.name])))
        for provider in providers.available()
    ]
    rows = addons.addon_prices()
    share = addons.backup_share()
    if addon_form is None and can_edit:
        addon_form = AddonPricesForm(
            prices={kind: quantize(row.price if row else 0) for kind, row in rows.items()}, share=share
        )
    return render(
        request,
        "billing/settings.html",
        {
            "rows": _settings_rows(profile),
            "gateways": gateways,
            "seller": profile,
            "seller_name": seller.seller_name(profile),
            "payment": seller.payment_details(profile),
            "example_reference": f"INV-{timezone.localdate().year}-000123",
            "seller_form": seller_form,
            "can_edit": can_edit,
            "addon_form": addon_form,
            "addon_prices": [
                (AddonPricesForm.LABELS.get(kind, AddonKind(kind).label), rows[kind])
                for kind in AddonPricesForm.PRICED
            ],
            "backup_share": share,
            "currency": currency(),
        },
    )


@staff_required
@require_POST
def billing_addon_prices(request: HttpRequest) -> HttpResponse:
    """Admins set the monthly price of each add-on kind (other staff only see them on the settings page).
    All of them are saved together or none is."""
    if not request.user.is_panel_admin:
        raise PermissionDenied
    form = AddonPricesForm(request.POST)
    if form.is_valid():
        try:
            with transaction.atomic():
                before = ({kind: addons.addon_price(kind) for kind in form.prices()}, addons.backup_share())
                for kind, price in form.prices().items():
                    addons.set_addon_price(kind, price, request.user)
                addons.set_backup_share(form.share(), request.user)
        except errors.BillingError as exc:
            form.add_error(None, exc.message)
        else:
            if before != (form.prices(), form.share()):
                messages.success(
                    request, _("The add-on prices were saved. They apply to add-ons added from now on.")
                )
            else:
                messages.info(request, _("Nothing was changed."))
            return redirect(reverse("billing-settings") + "#addon-prices")
    messages.error(request, _("The add-on prices were not saved: please correct the errors below."))
    profile = seller.profile()
    seller_form = SellerProfileForm(instance=profile, initial={"version": seller.version_of(profile)})
    return _render_settings(request, profile, seller_form=seller_form, addon_form=form)
