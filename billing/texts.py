"""Texts billing writes now and people read later, each in their own language: an invoice line's
description, a ledger entry's reason, the mails to a customer.

A stored text is its English message (marked with `gettext_noop` where it is written) and its values,
rendered when it is shown, under the reader's active language (`Message.render`), as the activity log does
(`ActivityEvent.text`). Dates and amounts among the values are kept as data (`date_value`)
and formatted at display time like the templates format them: "1 Des 2026", "Rp45.000" in Indonesian.
The English text is also kept in the row's plain column (the Django admin, old rows, free text staff type).

Mail goes out in the recipient's language (`language_of`), whatever language the process runs in.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils import formats, timezone, translation
from django.utils.functional import Promise
from django.utils.translation import gettext, pgettext

from .money import format_money

ENGLISH = "en"


def date_value(moment: datetime | date) -> dict:
    """A date among a stored text's values (a moment counts as its local date), formatted when shown."""
    if isinstance(moment, datetime):
        moment = (timezone.localtime(moment) if timezone.is_aware(moment) else moment).date()
    return {"date": moment.isoformat()}


def _shown(value):
    """One value as the active language writes it (a stored message among the values, such as an add-on's
    name, rendered in it too)."""
    if isinstance(value, dict):
        nested = Message.from_data(value)
        if nested is not None:
            return nested.render()
        try:
            if "date" in value:
                return _date_text(value["date"], translation.get_language())
            if "money" in value:
                return format_money(Decimal(value["money"]), value.get("currency") or None)
        except (TypeError, ValueError, InvalidOperation):
            return value
    if isinstance(value, float | Decimal):
        return formats.localize(value, use_l10n=True)
    return value


@functools.lru_cache(maxsize=1024)
def _date_text(iso: str, language: str | None) -> str:
    """A stored date as the active language (`language`, which keys the cache) writes it: a billing run
    writes the same few dates on thousands of lines."""
    return formats.date_format(date.fromisoformat(iso), "DATE_FORMAT")


@receiver(setting_changed)
def _forget_date_texts(**kwargs) -> None:
    _date_text.cache_clear()  # the formats may have changed (tests)


@dataclass
class Message:
    """An English message and its values: stored as `data()` in a JSON column, shown with `render()` in
    the reader's language. The message is marked for translation where it is written: with
    `gettext_noop("...")`, or with `pgettext_lazy("context", "...")` when it needs a context (the context
    is then kept too)."""

    message: str
    values: dict = field(default_factory=dict)
    context: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.message, Promise):  # gettext_lazy(message) or pgettext_lazy(context, message)
            args = getattr(self.message, "_args", ())  # the untranslated arguments of the lazy call
            if len(args) == 2 and all(isinstance(arg, str) for arg in args):
                self.context, self.message = args
            elif len(args) == 1 and isinstance(args[0], str):
                self.message = args[0]
            else:
                with translation.override(ENGLISH):
                    self.message = str(self.message)

    def data(self) -> dict:
        data = {"message": self.message, "values": self.values}
        if self.context:
            data["context"] = self.context
        return data

    @classmethod
    def from_data(cls, data) -> Message | None:
        if isinstance(data, dict) and isinstance(data.get("message"), str) and data["message"]:
            values = data.get("values")
            context = data.get("context")
            return cls(
                data["message"],
                dict(values) if isinstance(values, dict) else {},
                context if isinstance(context, str) else "",
            )
        return None

    def render(self) -> str:
        """The text in the active language, its dates and amounts formatted for it."""
        text = pgettext(self.context, self.message) if self.context else gettext(self.message)
        if not self.values:
            return text
        shown = {name: _shown(value) for name, value in self.values.items()}
        try:
            return text % shown
        except (KeyError, TypeError, ValueError):
            try:
                return self.message % shown  # a broken translation: the English message
            except (KeyError, TypeError, ValueError):
                return self.message

    def english(self) -> str:
        """The text in English: what the row's plain column keeps."""
        if translation.get_language() == ENGLISH:  # e.g. many written under one override
            return self.render()
        with translation.override(ENGLISH):
            return self.render()


def render(data, fallback: str) -> str:
    """A stored text (its `*_data` column) in the active language; `fallback` (the plain column) for rows
    without one: old rows and free text."""
    message = Message.from_data(data)
    return message.render() if message is not None else fallback


def mail_in(language: str, subject: str, body: str, to: list[str]) -> EmailMessage:
    """A plain-text mail written in `language` (which its Content-Language header names), from
    DEFAULT_FROM_EMAIL: billing's mails and the panel's (panel.mail.send_in_language)."""
    return EmailMessage(
        subject, body, settings.DEFAULT_FROM_EMAIL, to, headers={"Content-Language": language}
    )


def language_of(account) -> str:
    """The language an account reads in (the user model's `language`); the installation's default for an
    account without a known one. An account given only by its key (`User(pk=...)`) is looked up."""
    codes = dict(settings.LANGUAGES)
    if account is None:
        return settings.LANGUAGE_CODE
    language = getattr(account, "language", None)
    if account.pk is not None and account._state.adding:
        language = get_user_model().objects.filter(pk=account.pk).values_list("language", flat=True).first()
    return language if language in codes else settings.LANGUAGE_CODE
