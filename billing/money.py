"""Money is Decimal, rounded to the currency's own precision with one rule: ROUND_HALF_UP."""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.conf import settings
from django.utils import formats

# Minor-unit digits (ISO 4217). IDR is quoted without a minor unit in practice.
CURRENCY_EXPONENTS = {"IDR": 0, "USD": 2, "EUR": 2, "SGD": 2, "MYR": 2, "JPY": 0}
ZERO = Decimal("0")


def currency() -> str:
    return settings.PANEL_CURRENCY


def quantize(amount: Decimal, code: str | None = None) -> Decimal:
    """Round an amount to the precision of the currency (the installation's by default)."""
    exponent = CURRENCY_EXPONENTS.get(code or currency(), 2)
    return Decimal(amount).quantize(Decimal(1).scaleb(-exponent), rounding=ROUND_HALF_UP)


MINUS = "\u2212"  # a real minus sign, as wide as the plus


def decimal_or_none(value) -> Decimal | None:
    """A template's value as a Decimal; None for empty or not a number."""
    if value in (None, ""):
        return None
    try:
        return Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        return None


def format_amount(value, code: str | None = None, *, rate: bool = False) -> str:
    """The amount alone, localised in the active language: 1500000 → "1,500,000" (IDR; "1.500.000" in
    Indonesian), 12.5 → "12.50" (USD; "12,50" in Indonesian).

    With rate=True up to four decimals are kept (trailing zeros dropped, never fewer than the currency's)."""
    amount = decimal_or_none(value)
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


# Currencies written with a symbol in front of the amount (both languages): "Rp45.000" in Indonesian,
# "Rp45,000" in English. Others keep their ISO code: "USD 12.50" ("USD 12,50" in Indonesian).
CURRENCY_SYMBOLS = {"IDR": "Rp"}


def currency_symbol(code: str | None = None) -> str:
    """What goes in front of an amount of the currency: "Rp" for IDR, else the code ("USD")."""
    code = code or currency()
    return CURRENCY_SYMBOLS.get(code, code)


def format_money(value, code: str | None = None, *, rate: bool = False) -> str:
    """The currency and the amount, localised in the active language: "Rp150.000" (Indonesian),
    "Rp150,000" (English), "USD 12.50"; "" for no amount. A negative amount: "−Rp150.000", "USD −12.50".
    With rate=True up to four decimals are kept (hourly prices, unit prices)."""
    code = code or currency()
    text = format_amount(value, code, rate=rate)
    if not text:
        return ""
    symbol = CURRENCY_SYMBOLS.get(code)
    if symbol is None:
        return f"{code} {text}"
    if text.startswith(MINUS):
        return f"{MINUS}{symbol}{text[len(MINUS) :]}"
    return f"{symbol}{text}"
