"""What the billing pages show besides the models: payment method labels and the staff customer page's
Billing section (shared by its template tag and the staff views). The seller and the bank transfer
instructions are in `billing.seller`."""

from __future__ import annotations

from decimal import Decimal

from billing import ledger, prices, providers
from billing.forms import AdjustmentForm, BillingTermsForm, RecordPaymentForm
from billing.models import BillingProfile, Invoice, LedgerEntry
from billing.money import currency

LEDGER_ROWS = 50


INVOICE_ROWS = 50


# The ways staff record a payment (the form's choices), by name; providers name themselves.
METHOD_LABELS = dict(RecordPaymentForm.METHODS)


def method_label(method: str) -> str:
    if method in METHOD_LABELS:
        return str(METHOD_LABELS[method])
    provider = providers.get(method)
    return provider.label or provider.name if provider else method


def staff_section_context(request, customer, **overrides) -> dict:
    """Everything the Billing section of the staff customer page shows; `overrides` are bound forms with
    errors, or a `notice` (level, text) after an action."""
    profile = BillingProfile.objects.filter(account=customer).first()
    entries = LedgerEntry.objects.filter(account=customer)
    context = {
        "request": request,
        "customer": customer,
        "balance": ledger.balance(customer),
        "currency": currency(),
        "ledger": entries.select_related("created_by", "invoice").order_by("-created_at", "-id")[
            :LEDGER_ROWS
        ],
        "ledger_count": entries.count(),
        "invoices": Invoice.objects.filter(account=customer).exclude(status=Invoice.Status.DRAFT)[
            :INVOICE_ROWS
        ],
        "payment_form": RecordPaymentForm(),
        "adjust_form": AdjustmentForm(),
        "terms_form": terms_form(customer, profile),
        "profile": profile,
        "notice": None,
    }
    context.update(overrides)
    return context


def terms_form(customer, profile: BillingProfile | None, data=None) -> BillingTermsForm:
    return BillingTermsForm(
        data,
        plans=prices.plans_on_sale(),
        custom_prices=profile.custom_prices if profile else {},
        initial={"discount_percent": profile.discount_percent if profile else Decimal(0)},
    )
