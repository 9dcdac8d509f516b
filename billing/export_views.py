"""The staff page that exports the output tax invoices of a period for Coretax (billing.tax_export): a date
range, the invoices it holds, and the XML file to download. Refused, with the reason, while the seller's
NPWP is not set."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET

from billing import tax_export
from billing.models import Invoice
from billing.money import ZERO
from panel.roles import staff_required


def _date_field(label) -> forms.DateField:
    return forms.DateField(
        label=label,
        widget=forms.DateInput(
            format="%Y-%m-%d",
            attrs={"placeholder": gettext_lazy("YYYY-MM-DD"), "inputmode": "numeric", "autocomplete": "off"},
        ),
    )


class TaxExportForm(forms.Form):
    """A period of local dates, both included. The fields are named `from` and `to`, as the command's
    options are."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["from"] = _date_field(gettext_lazy("From"))
        self.fields["to"] = _date_field(gettext_lazy("To"))

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("from"), cleaned.get("to")
        if start and end and start > end:
            raise ValidationError(_("The start of the period is after its end."))
        return cleaned


@dataclass(frozen=True)
class Row:
    invoice: Invoice
    buyer_id_kind: str  # "npwp", "nik" or "" (exported as Coretax's "Other ID")
    buyer_id: str


def last_month(today: date) -> tuple[date, date]:
    end = today.replace(day=1) - timedelta(days=1)
    return end.replace(day=1), end


@staff_required
@require_GET
def tax_export_page(request: HttpRequest) -> HttpResponse:
    """The form, and for a valid period its invoices (`?from=…&to=…`), or their XML (`&download=1`)."""
    if "from" in request.GET or "to" in request.GET:
        form = TaxExportForm(request.GET)
    else:
        start, end = last_month(timezone.localdate())
        form = TaxExportForm({"from": start.isoformat(), "to": end.isoformat()})
    try:
        tax_export.seller_tin()
        refusal = None
    except tax_export.ExportRefused as exc:
        refusal = exc.message
    problem, rows = None, []
    if form.is_valid():
        start, end = form.cleaned_data["from"], form.cleaned_data["to"]
        if request.GET.get("download") and not refusal:
            try:
                result = tax_export.export(start, end)
            except tax_export.ExportRefused as exc:
                problem = exc.message
            else:
                response = HttpResponse(result.xml, content_type="application/xml; charset=utf-8")
                response["Content-Disposition"] = f'attachment; filename="{result.filename}"'
                return response
        try:
            rows = [_row(invoice) for invoice in tax_export.selection(start, end)]
        except tax_export.ExportRefused as exc:
            problem = problem or exc.message
    return render(
        request,
        "billing/tax_export.html",
        {
            "form": form,
            "refusal": refusal,
            "problem": problem,
            "rows": rows,
            "totals": _totals(rows),
            "without_id": sum(1 for row in rows if not row.buyer_id_kind),
        },
    )


def _row(invoice: Invoice) -> Row:
    buyer = tax_export.buyer_of(invoice)
    if buyer.document == tax_export.TIN:
        return Row(invoice, "npwp", buyer.tin)
    if buyer.document == tax_export.NATIONAL_ID:
        return Row(invoice, "nik", buyer.document_number)
    return Row(invoice, "", "")


def _totals(rows: list[Row]) -> dict[str, Decimal] | None:
    if not rows:
        return None
    return {
        name: sum((getattr(row.invoice, name) for row in rows), ZERO)
        for name in ("subtotal", "tax_base", "tax", "total")
    }
