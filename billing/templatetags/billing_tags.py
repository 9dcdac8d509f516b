"""Money in templates, and the staff customer page's Billing section.

`{{ amount|money:currency }}` renders "Rp1.500.000" (Indonesian), "Rp1,500,000" (English) or "USD 12.50": the
currency's symbol or code, then the amount rounded to the currency's own precision (billing.money) with the
active language's separators. Never a float. `{{ price|rate:currency }}` keeps up to four decimals, for
hourly prices and unit prices; `{{ currency|currency_symbol }}` is what stands in front of a bare amount."""

from django import template
from django.utils import formats, timezone

from billing.invoice_states import Status as InvoiceStatus
from billing.money import currency_symbol as symbol_of
from billing.money import decimal_or_none, format_amount, format_money

register = template.Library()


@register.filter
def money(value, code: str = "") -> str:
    """{{ invoice.total|money:invoice.currency }} → "Rp150.000"; negative amounts get a minus sign."""
    return format_money(value, code or None)


@register.filter
def amount(value, code: str = "") -> str:
    """{{ balance|amount:currency }} → "150,000": the number without the currency code."""
    return format_amount(value, code or None)


@register.filter
def rate(value, code: str = "") -> str:
    """{{ subscription.price|rate:subscription.currency }} → "Rp74,4048" (up to four decimals)."""
    return format_money(value, code or None, rate=True)


@register.filter
def currency_symbol(code: str = "") -> str:
    """{{ currency|currency_symbol }} → "Rp" (IDR) or the code ("USD"): put in front of `|amount`."""
    return symbol_of(code or None)


@register.filter
def qty(value) -> str:
    """{{ line.quantity|qty }} → "1", "720", "1.5": a quantity without trailing zeros, localised."""
    number = decimal_or_none(value)
    if number is None:
        return ""
    places = max(0, -number.normalize().as_tuple().exponent)
    return formats.number_format(number, decimal_pos=min(places, 4), use_l10n=True, force_grouping=True)


@register.filter
def is_overdue(invoice) -> bool:
    """{% if invoice|is_overdue %}: open and past its due date."""
    return bool(invoice.status == InvoiceStatus.OPEN and invoice.due_at and invoice.due_at < timezone.now())


@register.filter
def absolute(value):
    """{{ balance|absolute|money:currency }}: what is owed, without its minus sign."""
    number = decimal_or_none(value)
    return abs(number) if number is not None else value
