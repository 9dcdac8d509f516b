"""Each account's language (`User.language`): what a logged-in user's pages, API answers and mails are in.

- `AccountLanguageMiddleware` (after Django's LocaleMiddleware and the authentication middleware) activates
  a logged-in user's language for the request; the user row is loaded anyway, so it costs no query.
  Anonymous visitors get what LocaleMiddleware chose (the language cookie, else Accept-Language).
- The API activates the token owner's language when it authenticates the token (`activate_for`).
- `save` changes an account's language: the account page and the topbar's language switch
  (`panel.accounts.views.set_language`, which wraps Django's view) call it.
- Mails and stored texts are rendered under the recipient's language with `translation.override`
  (`billing.texts.language_of`).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import translation

from panel.models import User


def is_known(code: str | None) -> bool:
    return code in dict(settings.LANGUAGES)


def save(user: User, code: str) -> bool:
    """Make `code` the account's language; False (nothing changed) for a language the panel lacks."""
    if not is_known(code):
        return False
    if user.language != code:
        User.objects.filter(pk=user.pk).update(language=code)
        user.language = code
    return True


def activate_for(request: HttpRequest, user) -> None:
    """Answer this request in the user's language (a user without a known one keeps the request's)."""
    language = getattr(user, "language", None)
    if not is_known(language):
        return
    translation.activate(language)
    # A DRF request wraps Django's: the language belongs on the wrapped request.
    getattr(request, "_request", request).LANGUAGE_CODE = translation.get_language()


class AccountLanguageMiddleware:
    """A logged-in user reads the panel in their account's language, whatever the browser asks for. An
    account without one (made before accounts had a language, or by an operator command without
    `--language`) takes the language its browser reads the panel in, once: its mails follow from then on."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            if not is_known(user.language):
                adopt(user, getattr(request, "LANGUAGE_CODE", ""))
            activate_for(request, user)
        return self.get_response(request)


def adopt(user: User, code: str) -> None:
    """Record the browser's language for an account that has none (only if it still has none)."""
    if is_known(code) and User.objects.filter(pk=user.pk, language="").update(language=code):
        user.language = code
