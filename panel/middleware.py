"""The second factor, enforced for the browser.

- A logged-in user who has two-factor authentication but whose session has not shown it (e.g. a session
  from before enrolment) is sent to the code step.
- Staff and admins without it are sent to enrolment: no page but enrolment, the login steps, logout and
  language switching answers them until they have enrolled.

Static files (served before this middleware) and the API (bearer tokens, checked in
`panel.api.authentication`) are not concerned. Must come after `django_otp.middleware.OTPMiddleware`.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode
from django_htmx.http import HttpResponseClientRedirect

# Pages every logged-in user reaches without the second factor.
OPEN_URL_NAMES = frozenset({"login", "login-code", "logout", "set_language"})
# What staff and admins reach before enrolling, besides those.
ENROLMENT_URL_NAMES = frozenset({"two-factor-setup"})
OPEN_PATH_PREFIXES = ("/api/",)


class SecondFactorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs) -> HttpResponse | None:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        match = request.resolver_match
        name = match.url_name if match is not None and not match.namespace else None
        path = request.path_info
        if name in OPEN_URL_NAMES or path.startswith(OPEN_PATH_PREFIXES) or path.startswith(_static_prefix()):
            return None
        if getattr(user, "is_verified", lambda: False)():
            return None
        if user.totp_enabled:
            return _send_to(request, "login-code")
        if user.is_panel_staff and name not in ENROLMENT_URL_NAMES:
            return _send_to(request, "two-factor-setup")
        return None


def _static_prefix() -> str:
    url = settings.STATIC_URL or "/static/"
    return url if url.startswith("/") else f"/{url}"


def _send_to(request: HttpRequest, url_name: str) -> HttpResponse:
    url = reverse(url_name)
    if request.method in ("GET", "HEAD") and not getattr(request, "htmx", False):
        url = f"{url}?{urlencode({'next': request.get_full_path()})}"
    if getattr(request, "htmx", False):
        return HttpResponseClientRedirect(url)
    return redirect(url)
