"""Account pages: sign-up and email verification, the account page (language, API tokens, recent
activity), the language switch, the activity log, and the password pages with their rate limits and
consequences (tokens revoked)."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views import i18n
from django.views.decorators.http import require_POST

from billing import ledger
from billing.money import currency
from panel import confirmation
from panel.accounts import api_tokens, email_verification, languages, throttling
from panel.accounts import signup as account_security
from panel.accounts.forms import ApiTokenForm, LanguageForm, LanguagePasswordResetForm, SignupForm
from panel.accounts.quotas import quota_rows
from panel.activity.log import client_ip
from panel.models import ActivityEvent, ApiToken

RECENT_EVENTS = 8
EVENTS_PER_PAGE = 50


def home(request):
    if not request.user.is_authenticated:
        return redirect("login")
    return redirect("staff-servers" if request.user.is_panel_staff else "server-list")


def throttled(response: HttpResponse, seconds: int) -> HttpResponse:
    """Turn a page that explains the limit into the 429 answer with Retry-After."""
    response.status_code = 429
    response["Retry-After"] = str(seconds)
    return response


def _limit_message(seconds: int) -> str:
    return _("Too many attempts from your address. %(retry)s") % {"retry": throttling.retry_message(seconds)}


def signup(request):
    if request.user.is_authenticated:
        return redirect("home")
    # The language the browser asked for (LocaleMiddleware: the language cookie, else Accept-Language).
    initial = {"language": getattr(request, "LANGUAGE_CODE", settings.LANGUAGE_CODE)}
    form = SignupForm(request.POST or None, initial=initial)
    if request.method == "POST":
        wait = throttling.hit_ip("signup", client_ip(request), settings.SIGNUP_RATE)
        if wait:
            context = {"form": SignupForm(initial=initial), "limit_message": _limit_message(wait)}
            return throttled(render(request, "registration/signup.html", context), wait)
        if form.is_valid():
            user = account_security.sign_up(request, form)
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            languages.activate_for(request, user)
            messages.success(
                request,
                _(
                    "Welcome! We sent a link to %(email)s: open it to verify your address, "
                    "then order your first server."
                )
                % {"email": user.email},
            )
            return redirect("server-order")
    return render(request, "registration/signup.html", {"form": form})


def verify_email(request, token: str):
    try:
        user = email_verification.verify(token)
    except email_verification.LinkInvalid as error:
        return render(request, "registration/verify_failed.html", {"expired": error.expired}, status=400)
    return render(request, "registration/verify_done.html", {"verified_user": user})


def _safe_next(request, default: str) -> str:
    target = request.POST.get("next") or ""
    if url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return default


@login_required
@require_POST
def resend_verification(request):
    user = request.user
    back = _safe_next(request, reverse("server-order"))
    if user.email_verified:
        messages.info(request, _("Your email address is verified already."))
        return redirect(back)
    wait = throttling.hit("verification-mail", f"user:{user.pk}", settings.VERIFICATION_RESEND_RATE)
    if wait:
        page = render(
            request,
            "registration/verify_resend_limited.html",
            {"retry": throttling.retry_message(wait), "back": back},
        )
        return throttled(page, wait)
    with transaction.atomic():
        email_verification.send(request, user)
    messages.success(request, _("We sent a new verification link to %(email)s.") % {"email": user.email})
    return redirect(back)


@login_required
def account(request):
    new_token = None
    form = ApiTokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            _token, new_token = api_tokens.issue(
                request.user,
                name=form.cleaned_data["name"],
                scope=form.cleaned_data["scope"],
                expires_at=form.expires_at(),
            )
        except api_tokens.TokenError as error:
            form.add_error(error.field if error.field in form.fields else None, error.message)
        else:
            form = ApiTokenForm()
    return render(
        request,
        "panel/account.html",
        {
            "balance": ledger.balance(request.user),
            "currency": currency(),
            # An account without a language yet: the one the page is in.
            "language_form": LanguageForm(
                initial={"language": request.user.language or translation.get_language()}
            ),
            "tokens": request.user.api_tokens.all(),
            "form": form,
            "new_token": new_token,
            "quota": quota_rows(request.user),
            "events": ActivityEvent.objects.filter(account=request.user).order_by("-at", "-id")[
                :RECENT_EVENTS
            ],
        },
    )


def _remember_language(response: HttpResponse, code: str) -> HttpResponse:
    """The language cookie too, as Django's set_language sets it: pages after logging out stay in it."""
    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME,
        code,
        max_age=settings.LANGUAGE_COOKIE_AGE,
        path=settings.LANGUAGE_COOKIE_PATH,
        domain=settings.LANGUAGE_COOKIE_DOMAIN,
        secure=settings.LANGUAGE_COOKIE_SECURE,
        httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
        samesite=settings.LANGUAGE_COOKIE_SAMESITE,
    )
    return response


@login_required
@require_POST
def account_language(request):
    """The account page's language form: the account's pages, mails and texts are in it from now on."""
    form = LanguageForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose one of the languages offered."))
        return redirect("account")
    code = form.cleaned_data["language"]
    languages.save(request.user, code)
    languages.activate_for(request, request.user)
    messages.success(request, _("Your language was changed."))
    return _remember_language(redirect("account"), code)


def set_language(request):
    """Django's language switch (`django.views.i18n.set_language`: the cookie and the redirect back); for
    a logged-in user it also changes the account's language, which the panel otherwise follows."""
    response = i18n.set_language(request)
    if request.method == "POST" and request.user.is_authenticated:
        code = request.POST.get("language", "")
        if translation.check_for_language(code):
            languages.save(request.user, code)
    return response


@login_required
def account_activity(request):
    events = ActivityEvent.objects.filter(account=request.user).order_by("-at", "-id")
    page = Paginator(events, EVENTS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "panel/account/activity.html", {"page": page, "events": page.object_list})


@login_required
@require_POST
def revoke_token(request, pk: int):
    if not confirmation.is_confirmed(request):
        token = get_object_or_404(ApiToken, pk=pk, user=request.user)
        return confirmation.ask(
            request,
            title=_("Revoke an API token"),
            question=_(
                "Revoke the token %(name)s? Scripts and integrations that use it stop working at once; this "
                "cannot be undone."
            )
            % {"name": token.name or _("Unnamed token")},
            confirm_label=_("Revoke token"),
            cancel_url=reverse("account"),
        )
    if not api_tokens.revoke(request.user, pk):
        raise Http404
    messages.success(request, _("The token was revoked."))
    return redirect("account")


class PasswordChangeView(auth_views.PasswordChangeView):
    """Changing the password revokes the account's API tokens and ends its other sessions (this one
    stays logged in)."""

    def form_valid(self, form):
        # Saving the password revokes the tokens and records the change (`User.save`).
        with transaction.atomic():
            return super().form_valid(form)


class PasswordResetView(auth_views.PasswordResetView):
    """Reset requests are limited per client address (PASSWORD_RESET_RATE). The mail is in the language
    of the account it is for."""

    form_class = LanguagePasswordResetForm

    def post(self, request, *args, **kwargs):
        wait = throttling.hit_ip("password-reset", client_ip(request), settings.PASSWORD_RESET_RATE)
        if wait:
            context = self.get_context_data(form=self.get_form_class()(), limit_message=_limit_message(wait))
            return throttled(self.render_to_response(context), wait)
        return super().post(request, *args, **kwargs)


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """A reset revokes the account's API tokens and ends its sessions."""

    def form_valid(self, form):
        form.user.password_reset_by_link = True  # recorded as a reset by `User.save`
        with transaction.atomic():
            return super().form_valid(form)
