"""PPN as PMK 131/2024 computes it: 12 % of a tax base (DPP) of 11/12 of the price, effectively 11 %, on
prices with or without tax, rounded once per invoice (half up, to whole rupiah; to cents in USD). Rate 0
means no tax; a rate or fraction the settings cannot mean stops issuing with ImproperlyConfigured and
nothing is written."""

from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from billing import invoices, tax
from billing.models import Invoice, InvoiceSequence, LedgerEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def law(settings):
    """The rule as the law has it today, prices entered without tax (each test sets what it needs)."""
    settings.TAX_RATE = "12"
    settings.TAX_BASE_FRACTION = "11/12"
    settings.PRICES_INCLUDE_TAX = False
    settings.PANEL_CURRENCY = "IDR"
    return settings


def amounts(breakdown: tax.Breakdown) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    return breakdown.subtotal, breakdown.tax_base, breakdown.tax, breakdown.total


def line(price: str) -> invoices.Line:
    return invoices.Line(kind="plan", description="Small VPS", unit_price=Decimal(price))


def test_a_plan_priced_without_tax_gets_eleven_percent_on_top(law):
    assert amounts(tax.compute(Decimal("150000"))) == (
        Decimal("150000"),
        Decimal("137500"),
        Decimal("16500"),
        Decimal("166500"),
    )


def test_a_plan_priced_with_tax_included_costs_its_price_and_shows_the_tax_in_it(law):
    law.PRICES_INCLUDE_TAX = True
    # The price before tax is 150,000 / 1.11 rounded; the PPN what remains; the DPP 11/12 of the price.
    assert amounts(tax.compute(Decimal("150000"))) == (
        Decimal("135135"),
        Decimal("123874"),
        Decimal("14865"),
        Decimal("150000"),
    )


def test_an_invoice_of_several_lines_is_rounded_once_not_line_by_line(law, customer):
    # Three lines of 4,550: 500.5 of tax each would round to 501 (1,503); the invoice's 1,501.5 is 1,502.
    invoice = invoices.issue_invoice(customer, [line("4550"), line("4550"), line("4550")])
    assert (invoice.subtotal, invoice.tax, invoice.total) == (
        Decimal("13650"),
        Decimal("1502"),
        Decimal("15152"),
    )
    assert invoice.tax_base == Decimal("12513")
    # With tax included: 45,000 a line would be 40,541 + 4,459 each (13,377 of tax); the invoice's 135,000
    # is 121,622 + 13,378.
    law.PRICES_INCLUDE_TAX = True
    invoice = invoices.issue_invoice(customer, [line("45000"), line("45000"), line("45000")])
    assert (invoice.subtotal, invoice.tax_base, invoice.tax, invoice.total) == (
        Decimal("121622"),
        Decimal("111487"),
        Decimal("13378"),
        Decimal("135000"),
    )


def test_halves_are_rounded_up_to_the_whole_rupiah(law):
    # 11 % of 150 is 16.5: half up gives 17 (a banker's rounding would give 16).
    assert amounts(tax.compute(Decimal("150"))) == (
        Decimal("150"),
        Decimal("138"),
        Decimal("17"),
        Decimal("167"),
    )
    # 5/6 of 3 is exactly 2.5: it rounds up although 5/6 has no exact decimal.
    law.TAX_BASE_FRACTION = "5/6"
    assert tax.compute(Decimal("3")).tax_base == Decimal("3")


def test_dollar_invoices_are_rounded_to_cents(law):
    law.PANEL_CURRENCY = "USD"
    assert amounts(tax.compute(Decimal("12.34"))) == (
        Decimal("12.34"),
        Decimal("11.31"),
        Decimal("1.36"),
        Decimal("13.70"),
    )
    law.PRICES_INCLUDE_TAX = True
    assert amounts(tax.compute(Decimal("12.34"))) == (
        Decimal("11.12"),
        Decimal("10.19"),
        Decimal("1.22"),
        Decimal("12.34"),
    )


def test_a_rate_of_zero_charges_no_tax(law, customer):
    law.TAX_RATE = "0"
    assert amounts(tax.compute(Decimal("150000"))) == (
        Decimal("150000"),
        Decimal("0"),
        Decimal("0"),
        Decimal("150000"),
    )
    invoice = invoices.issue_invoice(customer, [line("150000")])
    invoice.refresh_from_db()
    assert (invoice.tax_rate, invoice.tax_base_fraction, invoice.tax, invoice.total) == (
        Decimal("0"),
        "",
        Decimal("0"),
        Decimal("150000"),
    )


def test_a_new_rate_applies_to_new_invoices_and_issued_ones_keep_theirs(law, customer):
    before = invoices.issue_invoice(customer, [line("150000")])
    # The next change of law: 12 % of the whole price.
    law.TAX_BASE_FRACTION = "1"
    after = invoices.issue_invoice(customer, [line("150000")])
    assert (after.tax_rate, after.tax_base_fraction, after.tax_base, after.tax, after.total) == (
        Decimal("12"),
        "1/1",
        Decimal("150000"),
        Decimal("18000"),
        Decimal("168000"),
    )
    before.refresh_from_db()
    assert (before.tax_rate, before.tax_base_fraction, before.tax_base, before.tax, before.total) == (
        Decimal("12"),
        "11/12",
        Decimal("137500"),
        Decimal("16500"),
        Decimal("166500"),
    )
    law.TAX_RATE = "11.5"
    assert invoices.issue_invoice(customer, [line("150000")]).tax == Decimal("17250")


@pytest.mark.parametrize(
    "rate, fraction",
    [
        ("twelve", "11/12"),
        ("NaN", "11/12"),
        ("-1", "11/12"),
        ("100", "11/12"),
        ("12.345", "11/12"),  # invoices record the rate with two decimals
        ("12", "eleven twelfths"),
        ("12", "1/0"),
        ("12", "0"),
        ("12", "13/12"),
        ("12", "0.916666666667"),  # too long to be recorded on an invoice
    ],
)
def test_settings_the_rule_cannot_mean_stop_issuing_and_change_nothing(law, customer, rate, fraction):
    law.TAX_RATE = rate
    law.TAX_BASE_FRACTION = fraction
    with pytest.raises(ImproperlyConfigured):
        tax.current_rule()
    # (Issuing joins the caller's transaction: here the one a request or a task would hold.)
    with pytest.raises(ImproperlyConfigured), transaction.atomic():
        invoices.issue_invoice(customer, [line("150000")])
    assert not Invoice.objects.exists()
    assert not LedgerEntry.objects.exists()
    assert not InvoiceSequence.objects.filter(last__gt=0).exists()
