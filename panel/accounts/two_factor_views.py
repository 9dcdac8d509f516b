"""Two-factor authentication on the account page: set-up (QR code and secret, then a first code), the
recovery codes (shown once), new recovery codes and removal (each after a code or the password). The work is
done by `panel.accounts.totp`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django_otp import login as otp_login

from panel.accounts import throttling, totp
from panel.accounts.login_views import safe_next


class ConfirmForm(forms.Form):
    code = forms.CharField(
        label=gettext_lazy("Code from the app"),
        max_length=10,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "inputmode": "numeric",
                "pattern": r"[0-9 ]*",
                "placeholder": "123456",
            }
        ),
    )


class ReauthenticateForm(forms.Form):
    """A current code (or recovery code) or the password, before removal or new recovery codes."""

    code = forms.CharField(
        label=gettext_lazy("Code from the app, or a recovery code"),
        max_length=32,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autocapitalize": "none"}),
    )
    password = forms.CharField(
        label=gettext_lazy("Or your password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("code") and not cleaned.get("password"):
            raise forms.ValidationError(_("Enter a code or your password."))
        return cleaned


def _codes_page(request: HttpRequest, codes: list[str], next_url: str, first_time: bool) -> HttpResponse:
    return render(
        request,
        "panel/account/recovery_codes.html",
        {"codes": codes, "next": next_url, "first_time": first_time},
    )


@login_required
@never_cache
@sensitive_post_parameters("code")
def setup(request: HttpRequest) -> HttpResponse:
    """Scan the QR code (or type the secret), then confirm with the app's current code."""
    user = request.user
    next_url = safe_next(request)
    if totp.has_totp(user):
        messages.info(request, _("Two-factor authentication is enabled already."))
        return redirect("account")
    form = ConfirmForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            device, codes = totp.confirm(user, form.cleaned_data["code"])
        except totp.CodeThrottled as exc:
            form.add_error(
                "code",
                _("Too many wrong codes. %(retry)s") % {"retry": throttling.retry_message(exc.retry_after)},
            )
        except totp.TwoFactorError as exc:
            form.add_error("code", exc.message)
        else:
            # The user has just shown the second factor: this session counts as verified.
            request.session.cycle_key()
            otp_login(request, device)
            return _codes_page(request, codes, next_url, first_time=True)
    try:
        device = totp.pending_device(user)
    except totp.TwoFactorError:
        return redirect("account")
    return render(
        request,
        "panel/account/two_factor_setup.html",
        {
            "form": form,
            "next": next_url,
            "qr_svg": mark_safe(totp.qr_svg(device)),  # noqa: S308  (segno's own SVG, no user input)
            "secret": totp.secret(device, grouped=True),
            "required": user.is_panel_staff,
        },
    )


def _confirm_throttled(form: ReauthenticateForm, retry_after: int) -> None:
    form.add_error(
        None, _("Too many wrong attempts. %(retry)s") % {"retry": throttling.retry_message(retry_after)}
    )


def _with_retry_after(response: HttpResponse, retry_after: int | None) -> HttpResponse:
    if retry_after:
        response.status_code = 429
        response["Retry-After"] = str(retry_after)
    return response


@dataclass
class Reauthenticated:
    """The outcome of a change that asks for a current code or the password first."""

    form: ReauthenticateForm
    done: bool = False
    result: object = None
    retry_after: int | None = None


def _after_reauthentication(request: HttpRequest, change: Callable[..., object]) -> Reauthenticated:
    """Run `change(user, code=…, password=…)` (a totp service) once a valid form was posted; its refusal
    or throttling becomes a form error."""
    outcome = Reauthenticated(ReauthenticateForm(request.POST if request.method == "POST" else None))
    if request.method != "POST" or not outcome.form.is_valid():
        return outcome
    data = outcome.form.cleaned_data
    try:
        outcome.result = change(request.user, code=data["code"], password=data["password"])
        outcome.done = True
    except totp.CodeThrottled as exc:
        _confirm_throttled(outcome.form, exc.retry_after)
        outcome.retry_after = exc.retry_after
    except totp.TwoFactorError as exc:
        outcome.form.add_error(None, exc.message)
    return outcome


@login_required
@never_cache
@sensitive_post_parameters("code", "password")
def recovery_codes(request: HttpRequest) -> HttpResponse:
    """New recovery codes (the old ones stop working), after a current code or the password."""
    if not totp.has_totp(request.user):
        return redirect("account")
    outcome = _after_reauthentication(request, totp.regenerate_recovery_codes)
    if outcome.done:
        return _codes_page(request, outcome.result, "", first_time=False)
    page = render(request, "panel/account/recovery_codes_confirm.html", {"form": outcome.form})
    return _with_retry_after(page, outcome.retry_after)


@login_required
@never_cache
@sensitive_post_parameters("code", "password")
def remove(request: HttpRequest) -> HttpResponse:
    """Remove two-factor authentication after a current code or the password."""
    if not totp.has_totp(request.user):
        return redirect("account")
    outcome = _after_reauthentication(request, totp.remove)
    if outcome.done:
        messages.success(request, _("Two-factor authentication was removed from your account."))
        return redirect("account")
    page = render(
        request,
        "panel/account/two_factor_remove.html",
        {"form": outcome.form, "required": request.user.is_panel_staff},
    )
    return _with_retry_after(page, outcome.retry_after)
