"""Money in templates, and the staff customer page's Billing section.

`{{ amount|money:currency }}` renders "IDR 1,500,000" or "USD 12.50": the currency code, then the amount
rounded to the currency's own precision (billing.money) with the locale's separators. Never a float.
`{{ price|rate:currency }}` keeps up to four decimals, for hourly prices and unit prices."""

from django import template
from django.utils import formats, timezone

from billing import page_context
from billing.invoice_states import Status as InvoiceStatus
from billing.money import currency, decimal_or_none, format_amount, format_money

register = template.Library()


@register.filter
def money(value, code: str = "") -> str:
    """{{ invoice.total|money:invoice.currency }} → "IDR 150,000"; negative amounts get a minus sign."""
    return format_money(value, code or None)


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
