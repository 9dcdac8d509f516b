"""Money is Decimal, rounded to the currency's own precision with one rule: ROUND_HALF_UP."""

from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings

# Minor-unit digits (ISO 4217). IDR is quoted without a minor unit in practice.
CURRENCY_EXPONENTS = {"IDR": 0, "USD": 2, "EUR": 2, "SGD": 2, "MYR": 2, "JPY": 0}
ZERO = Decimal("0")


def currency() -> str:
    return settings.PANEL_CURRENCY


def quantize(amount: Decimal, code: str | None = None) -> Decimal:
    """Round an amount to the precision of the currency (the installation's by default)."""
    exponent = CURRENCY_EXPONENTS.get(code or currency(), 2)
    return Decimal(amount).quantize(Decimal(1).scaleb(-exponent), rounding=ROUND_HALF_UP)
