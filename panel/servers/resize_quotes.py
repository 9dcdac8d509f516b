"""Resize price quotes: the resize form shows what a plan change costs now for the rest of the paid period,
an amount that shrinks minute by minute. The form carries a signed quote (the server, the moment priced and
the subscription's paid-through date); a resize sent within QUOTE_SECONDS is charged as priced then, so the
customer pays what they read. An older quote is refused with a fresh price instead of a different charge."""

from __future__ import annotations

from datetime import datetime

from django.core import signing
from django.utils import timezone

QUOTE_SECONDS = 15 * 60
# The resize card is drawn anew (with a fresh quote) at least this often, so a quote the page holds is
# always well inside its validity.
QUOTE_REFRESH_SECONDS = 5 * 60
_SALT = "panel.servers.resize-quote"


class QuoteExpired(Exception):
    """The quote is too old, was made for another server, or its subscription changed since."""


def make(server_id, paid_through: datetime | None, at: datetime | None = None) -> str:
    at = at or timezone.now()
    through = paid_through.isoformat() if paid_through else None
    payload = {"server": str(server_id), "at": at.isoformat(), "through": through}
    return signing.dumps(payload, salt=_SALT, compress=True)


def read(token: str, server_id, paid_through: datetime | None) -> datetime:
    """The moment the quote priced the change; QuoteExpired when it cannot be honoured."""
    try:
        payload = signing.loads(token, salt=_SALT, max_age=QUOTE_SECONDS)
    except signing.BadSignature as exc:  # also SignatureExpired
        raise QuoteExpired(str(exc)) from exc
    if payload.get("server") != str(server_id):
        raise QuoteExpired("the quote is for another server")
    if payload.get("through") != (paid_through and paid_through.isoformat()):
        raise QuoteExpired("the subscription changed since the quote")
    at = datetime.fromisoformat(payload["at"])
    age = (timezone.now() - at).total_seconds()
    if not 0 <= age <= QUOTE_SECONDS:
        raise QuoteExpired("the quote is too old (or from the future)")
    return at


def window() -> int:
    """Which refresh window it is now (part of the resize card's state key)."""
    return int(timezone.now().timestamp() // QUOTE_REFRESH_SECONDS)
