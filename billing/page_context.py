"""What the billing pages show besides the models: payment method labels and the staff customer page's
Billing section (shared by its template tag and the staff views). The seller and the bank transfer
instructions are in `billing.seller`."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from django.db.models import Model

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


def with_labels(rows: Iterable[Model], field: str) -> list[Model]:
    """The rows as a list, each with `<field>_label`: its choice's label in the active language, as
    get_<field>_display gives it. Django's method translates every label of the field's choices on each call
    (it hashes them); here each label used is translated once for all the rows."""
    rows = list(rows)
    labels: dict = {}
    for row in rows:
        value = getattr(row, field)
        if value not in labels:
            labels[value] = getattr(row, f"get_{field}_display")()
        setattr(row, f"{field}_label", labels[value])
    return rows


def staff_section_context(request, customer, **overrides) -> dict:
    """Everything the Billing section of the staff customer page shows; `overrides` are bound forms with
    errors, or a `notice` (level, text) after an action."""
    profile = BillingProfile.objects.filter(account=customer).first()
    entries = LedgerEntry.objects.filter(account=customer)
    ledger_rows = with_labels(
        entries.select_related("created_by", "invoice").order_by("-created_at", "-id")[:LEDGER_ROWS], "kind"
    )
    context = {
        "request": request,
        "customer": customer,
        "balance": ledger.balance(customer),
        "currency": currency(),
        "ledger": ledger_rows,
        "ledger_count": entries.count(),
        "invoices": with_labels(
            Invoice.objects.filter(account=customer).exclude(status=Invoice.Status.DRAFT)[:INVOICE_ROWS],
            "status",
        ),
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
