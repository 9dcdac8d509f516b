"""Logging in, in two steps: email and password (`LoginForm`, with its failed-login lock-out), then, for a
user with two-factor authentication, a code from the authenticator app or a recovery code.

Between the steps the session holds only a *pending* login (the user, the backend, the password's session
hash and the time); the session counts as logged in after the code, when `django.contrib.auth.login`
(a new session key) and `django_otp.login` run together. A pending login expires after
`TOTP_LOGIN_PENDING_SECONDS`, ends when the password changes, and is dropped after
`TOTP_LOGIN_MAX_WRONG_CODES` wrong codes (back to the password step); the devices add django-otp's own
back-off. The same code step serves a logged-in user whose session lacks the second factor (a session from
before enrolment).
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django_otp import login as otp_login

from panel.accounts import throttling, totp
from panel.accounts.forms import LoginForm

PENDING_KEY = "panel_login_pending"
WRONG_CODES_KEY = "panel_login_wrong_codes"


class CodeForm(forms.Form):
    code = forms.CharField(
        label=gettext_lazy("Code"),
        max_length=32,
        strip=True,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "autocapitalize": "none",
                "spellcheck": "false",
                "autofocus": True,
                "placeholder": "123456",
            }
        ),
        help_text=gettext_lazy(
            "The 6-digit code from your authenticator app, or one of your recovery codes."
        ),
    )


def safe_next(request: HttpRequest, candidate: str | None = None) -> str:
    candidate = candidate if candidate is not None else request.POST.get("next") or request.GET.get("next")
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return ""


def _redirect_after_login(next_url: str) -> HttpResponse:
    return redirect(next_url or resolve_url(settings.LOGIN_REDIRECT_URL))


def _with_next(url_name: str, next_url: str) -> str:
    url = reverse(url_name)
    return f"{url}?{urlencode({'next': next_url})}" if next_url else url


def _throttled(response: HttpResponse, seconds: int) -> HttpResponse:
    response.status_code = 429
    response["Retry-After"] = str(seconds)
    return response


@sensitive_post_parameters("password")
@csrf_protect
@never_cache
def login_view(request: HttpRequest) -> HttpResponse:
    """The password step (the login page)."""
    next_url = safe_next(request)
    form = LoginForm(request, data=request.POST if request.method == "POST" else None)
    if request.method == "POST":
        if form.is_valid():
            user = form.get_user()
            if totp.has_totp(user):
                request.session.pop(WRONG_CODES_KEY, None)
                request.session[PENDING_KEY] = {
                    "user": user.pk,
                    "backend": user.backend,
                    "hash": user.get_session_auth_hash(),
                    "since": timezone.now().timestamp(),
                    "next": next_url,
                }
                return redirect(_with_next("login-code", next_url))
            request.session.pop(PENDING_KEY, None)
            auth_login(request, user)
            return _redirect_after_login(next_url)
        if form.throttled_for:
            page = render(request, "registration/login.html", {"form": form, "next": next_url})
            return _throttled(page, form.throttled_for)
    return render(request, "registration/login.html", {"form": form, "next": next_url})


def _pending_user(request: HttpRequest):
    """The user of the pending login in this session, or None (also when it expired or the password
    changed since)."""
    pending = request.session.get(PENDING_KEY)
    if not isinstance(pending, dict):
        return None
    age = timezone.now().timestamp() - float(pending.get("since", 0))
    user = get_user_model().objects.filter(pk=pending.get("user"), is_active=True).first()
    if (
        user is None
        or not 0 <= age <= settings.TOTP_LOGIN_PENDING_SECONDS
        or pending.get("hash") != user.get_session_auth_hash()
    ):
        request.session.pop(PENDING_KEY, None)
        return None
    return user


@sensitive_post_parameters("code")
@csrf_protect
@never_cache
def login_code(request: HttpRequest) -> HttpResponse:
    """The second step: a code from the authenticator app or a recovery code."""
    signed_in = request.user.is_authenticated
    if signed_in:
        if getattr(request.user, "is_verified", lambda: False)() or not totp.has_totp(request.user):
            return _redirect_after_login(safe_next(request))
        user = request.user
        pending: dict = {}
    else:
        user = _pending_user(request)
        if user is None:
            if request.method == "POST":
                messages.error(request, _("Your login timed out. Log in again."))
            return redirect(_with_next("login", safe_next(request)))
        pending = request.session[PENDING_KEY]
    next_url = safe_next(request) or pending.get("next", "")
    form = CodeForm(request.POST if request.method == "POST" else None)
    context = {"form": form, "next": next_url, "email": user.email}
    if request.method == "POST" and form.is_valid():
        try:
            device = totp.verify(user, form.cleaned_data["code"])
        except totp.CodeThrottled as exc:
            form.add_error(
                None,
                _("Too many wrong codes. %(retry)s") % {"retry": throttling.retry_message(exc.retry_after)},
            )
            return _throttled(render(request, "registration/login_code.html", context), exc.retry_after)
        if device is not None:
            if signed_in:
                request.session.cycle_key()
            else:
                user.otp_device = device  # django_otp's user_logged_in receiver keeps it in the session
                auth_login(request, user, backend=pending["backend"])
            otp_login(request, device)
            request.session.pop(PENDING_KEY, None)
            request.session.pop(WRONG_CODES_KEY, None)
            return _redirect_after_login(next_url)
        totp.record_wrong_code(user)
        wrong = int(request.session.get(WRONG_CODES_KEY, 0)) + 1
        if wrong >= settings.TOTP_LOGIN_MAX_WRONG_CODES:
            request.session.pop(PENDING_KEY, None)
            request.session.pop(WRONG_CODES_KEY, None)
            if signed_in:
                auth_logout(request)
            messages.error(request, _("Too many wrong codes. Log in again with your password."))
            return redirect(_with_next("login", next_url))
        request.session[WRONG_CODES_KEY] = wrong
        form.add_error("code", _("That code is not right. Enter the current code from your app."))
    return render(request, "registration/login_code.html", context)


def admin_login(request: HttpRequest, extra_context=None) -> HttpResponse:
    """The Django admin's login page: the panel's own two-step login instead (so that the admin is reached
    only with the second factor)."""
    next_url = safe_next(request) or reverse("admin:index")
    user = request.user
    if not user.is_authenticated:
        return redirect(_with_next("login", next_url))
    if not user.is_panel_admin:
        raise PermissionDenied
    if not getattr(user, "is_verified", lambda: False)():
        return redirect(_with_next("login-code" if totp.has_totp(user) else "two-factor-setup", next_url))
    return redirect(next_url)
