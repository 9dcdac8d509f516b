from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from billing import services as billing
from billing.money import currency

from ..forms import ApiTokenForm, SignupForm
from ..models import ApiToken
from ..quotas import quota_rows


def home(request):
    if not request.user.is_authenticated:
        return redirect("login")
    return redirect("staff-servers" if request.user.is_panel_staff else "server-list")


def signup(request):
    if request.user.is_authenticated:
        return redirect("home")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, _("Welcome! Your account is ready; order your first server."))
        return redirect("server-order")
    return render(request, "registration/signup.html", {"form": form})


@login_required
def account(request):
    new_token = None
    form = ApiTokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        _token, new_token = ApiToken.issue(request.user, form.cleaned_data["name"])
        form = ApiTokenForm()
    return render(
        request,
        "panel/account.html",
        {
            "balance": billing.balance(request.user),
            "currency": currency(),
            "tokens": request.user.api_tokens.all(),
            "form": form,
            "new_token": new_token,
            "quota": quota_rows(request.user),
        },
    )


@login_required
@require_POST
def revoke_token(request, pk: int):
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    token.delete()
    messages.success(request, _("The token was revoked."))
    return redirect("account")
