"""Tax on invoices: PPN (value added tax) as Indonesian law computes it for these services today. Under
PMK 131/2024 the rate is 12 %, applied to a tax base (DPP, "nilai lain") of 11/12 of the price, which is
11 % of the price in effect. Rate and fraction are settings (TAX_RATE, TAX_BASE_FRACTION), so the next
change of law is a setting; TAX_RATE=0 means no tax. Prices are entered with tax included or not
(PRICES_INCLUDE_TAX).

An invoice's tax is computed once, on the sum of its lines, and rounded once to the currency's unit
(billing.money: whole rupiah, ROUND_HALF_UP), never per line."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .money import ZERO, quantize

HUNDRED = Decimal(100)


@dataclass(frozen=True)
class TaxRule:
    rate: Decimal  # percent
    base_fraction: Fraction
    prices_include_tax: bool

    @property
    def charges_tax(self) -> bool:
        return self.rate > 0

    @property
    def effective_rate(self) -> Decimal:
        """The tax as a share of the price before tax: 0.11 for 12 % of 11/12."""
        fraction = Decimal(self.base_fraction.numerator) / Decimal(self.base_fraction.denominator)
        return self.rate / HUNDRED * fraction

    @property
    def fraction_text(self) -> str:
        return f"{self.base_fraction.numerator}/{self.base_fraction.denominator}" if self.charges_tax else ""


@dataclass(frozen=True)
class Breakdown:
    """One invoice's amounts: the price before tax, the tax base, the tax and what is owed."""

    subtotal: Decimal
    tax_base: Decimal
    tax: Decimal
    total: Decimal


def parse_fraction(text: str) -> Fraction:
    """ "11/12", "1" or "0.9" as a Fraction between 0 (excluded) and 1; ImproperlyConfigured otherwise."""
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError) as exc:
        raise ImproperlyConfigured(f"TAX_BASE_FRACTION {text!r} is not a fraction like 11/12") from exc
    if not 0 < value <= 1:
        raise ImproperlyConfigured(f"TAX_BASE_FRACTION {text!r} must be more than 0 and at most 1")
    return value


def current_rule() -> TaxRule:
    """The rule invoices are issued under now, from the settings."""
    rate = Decimal(str(settings.TAX_RATE))
    if rate < 0 or rate >= HUNDRED:
        raise ImproperlyConfigured(f"TAX_RATE {settings.TAX_RATE!r} must be a percentage from 0 to under 100")
    return TaxRule(
        rate=rate,
        base_fraction=parse_fraction(str(settings.TAX_BASE_FRACTION)),
        prices_include_tax=bool(settings.PRICES_INCLUDE_TAX),
    )


def compute(lines_total: Decimal, rule: TaxRule | None = None) -> Breakdown:
    """The breakdown of an invoice whose lines add up to `lines_total` (with or without tax, as the rule
    says prices are entered). Rounded once: the tax of prices without tax is the exact tax of the subtotal,
    rounded; of prices with tax, the subtotal is the exact price before tax, rounded, and the tax what
    remains, so that subtotal + tax is always the total."""
    rule = rule or current_rule()
    amount = quantize(lines_total)
    if not rule.charges_tax:
        return Breakdown(subtotal=amount, tax_base=ZERO, tax=ZERO, total=amount)
    fraction = Decimal(rule.base_fraction.numerator) / Decimal(rule.base_fraction.denominator)
    if rule.prices_include_tax:
        total = amount
        subtotal = quantize(total / (1 + rule.effective_rate))
        tax = total - subtotal
    else:
        subtotal = amount
        tax = quantize(subtotal * rule.effective_rate)
        total = subtotal + tax
    return Breakdown(subtotal=subtotal, tax_base=quantize(subtotal * fraction), tax=tax, total=total)


def proportion(part: Decimal, of_total: Decimal, breakdown: Breakdown) -> Breakdown:
    """The breakdown of `part` of an invoice whose breakdown is `breakdown` (a credit note for part of it):
    the same shares, the tax rounded once and the subtotal what remains."""
    part = quantize(part)
    if of_total <= 0 or part == of_total:
        return breakdown if part == of_total else Breakdown(part, ZERO, ZERO, part)
    tax = quantize(breakdown.tax * part / of_total)
    tax_base = quantize(breakdown.tax_base * part / of_total)
    return Breakdown(subtotal=part - tax, tax_base=tax_base, tax=tax, total=part)
