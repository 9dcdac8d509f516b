"""Money in templates, and the staff customer page's Billing section.

`{{ amount|money:currency }}` renders "IDR 1,500,000" or "USD 12.50": the currency code, then the amount
rounded to the currency's own precision (billing.money) with the locale's separators. Never a float.
`{{ price|rate:currency }}` keeps up to four decimals, for hourly prices and unit prices."""

from decimal import Decimal, InvalidOperation

from django import template
from django.utils import formats, timezone

from billing import page_context
from billing.money import CURRENCY_EXPONENTS, currency, quantize

register = template.Library()

MINUS = "\u2212"  # a real minus sign, as wide as the plus


def _decimal(value) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        return Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        return None


def format_amount(value, code: str | None = None, *, rate: bool = False) -> str:
    """The amount alone, localised: 1500000 → "1,500,000" (IDR), 12.5 → "12.50" (USD).

    With rate=True up to four decimals are kept (trailing zeros dropped, never fewer than the currency's)."""
    amount = _decimal(value)
    if amount is None:
        return ""
    code = code or currency()
    exponent = CURRENCY_EXPONENTS.get(code, 2)
    if rate:
        amount = amount.quantize(Decimal("0.0001"))
        places = max(exponent, -amount.normalize().as_tuple().exponent)
        places = min(places, 4)
    else:
        amount = quantize(amount, code)
        places = exponent
    text = formats.number_format(abs(amount), decimal_pos=places, use_l10n=True, force_grouping=True)
    return f"{MINUS}{text}" if amount < 0 else text


@register.filter
def money(value, code: str = "") -> str:
    """{{ invoice.total|money:invoice.currency }} → "IDR 150,000"; negative amounts get a minus sign."""
    text = format_amount(value, code or None)
    return f"{code or currency()} {text}" if text else ""


@register.filter
def amount(value, code: str = "") -> str:
    """{{ balance|amount:currency }} → "150,000": the number without the currency code."""
    return format_amount(value, code or None)


@register.filter
def rate(value, code: str = "") -> str:
    """{{ subscription.price|rate:subscription.currency }} → "IDR 74.4048" (up to four decimals)."""
    text = format_amount(value, code or None, rate=True)
    return f"{code or currency()} {text}" if text else ""


@register.inclusion_tag("billing/_staff_customer.html", takes_context=True)
def customer_billing(context, customer):
    """{% customer_billing customer %}: the Billing section of the staff customer page."""
    return page_context.staff_section_context(context["request"], customer)


@register.filter
def qty(value) -> str:
    """{{ line.quantity|qty }} → "1", "720", "1.5": a quantity without trailing zeros, localised."""
    number = _decimal(value)
    if number is None:
        return ""
    places = max(0, -number.normalize().as_tuple().exponent)
    return formats.number_format(number, decimal_pos=min(places, 4), use_l10n=True, force_grouping=True)


@register.filter
def is_overdue(invoice) -> bool:
    """{% if invoice|is_overdue %}: open and past its due date."""
    return bool(invoice.status == "open" and invoice.due_at and invoice.due_at < timezone.now())


@register.filter
def absolute(value):
    """{{ balance|absolute|money:currency }}: what is owed, without its minus sign."""
    number = _decimal(value)
    return abs(number) if number is not None else value
