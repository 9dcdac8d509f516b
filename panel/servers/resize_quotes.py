"""Resize price quotes: the resize form shows what each plan change costs now (or credits) for the rest of
the paid period, an amount that shrinks minute by minute. The form carries a signed quote of those amounts,
for this server on its current plan and paid period; a resize sent within QUOTE_SECONDS is charged exactly
the amount shown. An older quote, or one for another server, plan or period (the plan changed since: a quote
cannot be used twice), is refused and the page shows fresh prices."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.core import signing
from django.utils import timezone

QUOTE_SECONDS = 15 * 60
# The resize card is drawn anew (with a fresh quote) at least this often, so a quote the page holds is
# always well inside its validity.
QUOTE_REFRESH_SECONDS = 5 * 60
_SALT = "panel.servers.resize-quote"


class QuoteExpired(Exception):
    """The quote is too old, or was made for another server, plan or paid period."""


@dataclass(frozen=True)
class Quote:
    at: datetime
    # Plan slug -> what the change costs now (positive) or credits (negative).
    amounts: dict[str, Decimal]


def _through(paid_through: datetime | None) -> str | None:
    return paid_through.isoformat() if paid_through else None


def make(
    server_id,
    from_plan: str,
    paid_through: datetime | None,
    amounts: dict[str, Decimal],
    at: datetime | None = None,
) -> str:
    at = at or timezone.now()
    payload = {
        "server": str(server_id),
        "from": from_plan,
        "through": _through(paid_through),
        "at": at.isoformat(),
        "amounts": {slug: str(amount) for slug, amount in amounts.items()},
    }
    return signing.dumps(payload, salt=_SALT, compress=True)


def read(token: str, server_id, from_plan: str, paid_through: datetime | None) -> Quote:
    """The quote the form carried; QuoteExpired when it cannot be honoured."""
    try:
        payload = signing.loads(token, salt=_SALT, max_age=QUOTE_SECONDS)
        at = datetime.fromisoformat(payload["at"])
        amounts = {slug: Decimal(amount) for slug, amount in payload["amounts"].items()}
    except (signing.BadSignature, KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise QuoteExpired(str(exc)) from exc
    if (payload.get("server"), payload.get("from")) != (str(server_id), from_plan):
        raise QuoteExpired("the quote is for another server or plan")
    if payload.get("through") != _through(paid_through):
        raise QuoteExpired("the paid period changed since the quote")
    if not 0 <= (timezone.now() - at).total_seconds() <= QUOTE_SECONDS:
        raise QuoteExpired("the quote is too old (or from the future)")
    return Quote(at=at, amounts=amounts)


def window() -> int:
    """Which refresh window it is now (part of the resize card's key)."""
    return int(timezone.now().timestamp() // QUOTE_REFRESH_SECONDS)
