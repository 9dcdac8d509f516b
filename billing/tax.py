"""Tax on invoices: PPN (value added tax) as Indonesian law computes it for these services today. Under
PMK 131/2024 the rate is 12 %, applied to a tax base (DPP, "nilai lain") of 11/12 of the price, which is
11 % of the price in effect. Rate and fraction are settings (TAX_RATE, TAX_BASE_FRACTION), so the next
change of law is a setting; TAX_RATE=0 means no tax. Prices are entered with tax included or not
(PRICES_INCLUDE_TAX).

An invoice's tax is computed once, on the sum of its lines, and rounded once to the currency's unit
(billing.money: whole rupiah, ROUND_HALF_UP), never per line."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .money import CURRENCY_EXPONENTS, ZERO, currency, quantize

HUNDRED = Decimal(100)
# What Invoice.tax_base_fraction holds ("11/12"): a fraction written longer cannot be recorded on an invoice.
FRACTION_TEXT_MAX = 11


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
        """The tax as a share of the price before tax: 0.11 for 12 % of 11/12 (for display; the
        computation uses the exact fraction, `exact_rate`)."""
        return Decimal(self.exact_rate.numerator) / Decimal(self.exact_rate.denominator)

    @property
    def exact_rate(self) -> Fraction:
        """The tax as an exact share of the price before tax: 11/100 for 12 % of 11/12."""
        return Fraction(self.rate) / 100 * self.base_fraction

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
    """ "11/12", "1" or "0.9" as a Fraction between 0 (excluded) and 1, short enough to be recorded on an
    invoice as "numerator/denominator"; ImproperlyConfigured otherwise."""
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError) as exc:
        raise ImproperlyConfigured(f"TAX_BASE_FRACTION {text!r} is not a fraction like 11/12") from exc
    if not 0 < value <= 1:
        raise ImproperlyConfigured(f"TAX_BASE_FRACTION {text!r} must be more than 0 and at most 1")
    if len(f"{value.numerator}/{value.denominator}") > FRACTION_TEXT_MAX:
        raise ImproperlyConfigured(
            f"TAX_BASE_FRACTION {text!r} is too precise: write it as a fraction like 11/12"
        )
    return value


def parse_rate(text: str) -> Decimal:
    """ "12" or "11.5" as a percentage from 0 to under 100 with at most two decimals (as invoices record
    it); ImproperlyConfigured otherwise."""
    try:
        rate = Decimal(text.strip())
    except InvalidOperation as exc:
        raise ImproperlyConfigured(f"TAX_RATE {text!r} is not a number like 12") from exc
    if not rate.is_finite() or rate < 0 or rate >= HUNDRED:
        raise ImproperlyConfigured(f"TAX_RATE {text!r} must be a percentage from 0 to under 100")
    if rate != rate.quantize(Decimal("0.01")):
        raise ImproperlyConfigured(f"TAX_RATE {text!r} may have at most two decimals")
    return rate


def current_rule() -> TaxRule:
    """The rule invoices are issued under now, from the settings."""
    rate = parse_rate(str(settings.TAX_RATE))
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
    # Exact arithmetic, rounded once: 11/12 has no exact decimal, and a half rounded from an approximation
    # of it could go down instead of up.
    if rule.prices_include_tax:
        total = amount
        subtotal = round_exact(Fraction(total) / (1 + rule.exact_rate))
        tax = total - subtotal
    else:
        subtotal = amount
        tax = round_exact(Fraction(subtotal) * rule.exact_rate)
        total = subtotal + tax
    tax_base = round_exact(Fraction(subtotal) * rule.base_fraction)
    return Breakdown(subtotal=subtotal, tax_base=tax_base, tax=tax, total=total)


def round_exact(value: Fraction, code: str | None = None) -> Decimal:
    """An exact amount rounded once to the currency's unit, half up (away from zero), as billing.money
    rounds."""
    exponent = CURRENCY_EXPONENTS.get(code or currency(), 2)
    scaled = abs(value) * 10**exponent
    units, remainder = divmod(scaled.numerator, scaled.denominator)
    if 2 * remainder >= scaled.denominator:
        units += 1
    return quantize(Decimal(-units if value < 0 else units).scaleb(-exponent), code)


def proportion(part: Decimal, of_total: Decimal, breakdown: Breakdown) -> Breakdown:
    """The breakdown of `part` of an invoice whose breakdown is `breakdown` (a credit note for part of it):
    the same shares, the tax rounded once and the subtotal what remains."""
    part = quantize(part)
    if of_total <= 0 or part == of_total:
        return breakdown if part == of_total else Breakdown(part, ZERO, ZERO, part)
    tax = quantize(breakdown.tax * part / of_total)
    tax_base = quantize(breakdown.tax_base * part / of_total)
    return Breakdown(subtotal=part - tax, tax_base=tax_base, tax=tax, total=part)
