"""Account forms: sign-up, login, password reset, language, SSH keys, API tokens, and the quotas staff
set."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm, UserCreationForm
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.template import loader
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from panel.accounts import throttling
from panel.accounts.openssh import parse_public_key
from panel.activity.log import client_ip
from panel.models import ApiToken, SSHKey, User

log = logging.getLogger(__name__)


class SignupForm(UserCreationForm):
    """The email address, the password twice, and the language of the account (the view preselects the
    one the browser asked for)."""

    field_order = ["email", "password1", "password2", "language"]

    class Meta:
        model = User
        fields = ["email", "language"]
        labels = {"language": _("Language")}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["language"].required = False  # a form posted without it gets the preselected one

    def clean_language(self) -> str:
        return self.cleaned_data.get("language") or self.initial.get("language") or settings.LANGUAGE_CODE

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        if User.objects.filter(email=email).exists():
            raise ValidationError(_("An account with this email exists already."))
        return email


class LanguageForm(forms.Form):
    """The account page's choice of language."""

    language = forms.ChoiceField(label=_("Language"), choices=settings.LANGUAGES)


class LanguagePasswordResetForm(PasswordResetForm):
    """Django's reset form, with the mail written in the language of the account it is for (whatever
    language the person asking reads the page in)."""

    def send_mail(
        self,
        subject_template_name,
        email_template_name,
        context,
        from_email,
        to_email,
        html_email_template_name=None,
    ) -> None:
        language = getattr(context["user"], "language", None) or settings.LANGUAGE_CODE
        with translation.override(language):
            subject = "".join(loader.render_to_string(subject_template_name, context).splitlines())
            body = loader.render_to_string(email_template_name, context)
            html = (
                loader.render_to_string(html_email_template_name, context)
                if html_email_template_name is not None
                else None
            )
        message = EmailMultiAlternatives(
            subject, body, from_email, [to_email], headers={"Content-Language": language}
        )
        if html is not None:
            message.attach_alternative(html, "text/html")
        try:
            message.send()
        except Exception:
            log.exception("Failed to send password reset email to %s", context["user"].pk)


class LoginForm(AuthenticationForm):
    """The login form with the failed-login lock-out of `panel.accounts.throttling`: the lock is checked
    before the password (the right password is refused while locked). After `is_valid()`, `throttled_for`
    holds the seconds to wait when the login was refused for that reason (the view answers 429), else None."""

    throttled_for: int | None = None

    def _client_ip(self) -> str | None:
        return client_ip(self.request) if self.request is not None else None

    def clean(self):
        self.throttled_for = None
        username = self.cleaned_data.get("username")
        ip = self._client_ip()
        wait = throttling.login_locked_for(username, ip)
        if wait:
            self.throttled_for = wait
            raise ValidationError(
                _("Too many failed logins. %(retry)s") % {"retry": throttling.retry_message(wait)},
                code="throttled",
            )
        try:
            cleaned = super().clean()
        except ValidationError as error:
            if username and self.cleaned_data.get("password") and error.code == "invalid_login":
                locked = throttling.login_failed(username, ip)
                if locked:
                    self.throttled_for = locked
                    raise ValidationError(
                        [
                            error,
                            ValidationError(
                                _("Too many failed logins. %(retry)s")
                                % {"retry": throttling.retry_message(locked)},
                                code="throttled",
                            ),
                        ]
                    ) from None
            raise
        throttling.login_succeeded(username)
        return cleaned


class SSHKeyForm(forms.ModelForm):
    class Meta:
        model = SSHKey
        fields = ["name", "public_key"]
        widgets = {
            "public_key": forms.Textarea(attrs={"rows": 3, "placeholder": "ssh-ed25519 AAAA… you@laptop"})
        }

    def __init__(self, *args, owner: User, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = owner

    def clean_public_key(self) -> str:
        key = parse_public_key(self.cleaned_data["public_key"])
        if SSHKey.objects.filter(owner=self.owner, fingerprint=key.fingerprint).exists():
            raise ValidationError(_("You have added this key already."))
        self.instance.fingerprint = key.fingerprint
        return key.line

    def save(self, commit: bool = True) -> SSHKey:
        self.instance.owner = self.owner
        return super().save(commit)


class ApiTokenForm(forms.Form):
    EXPIRY_DAYS = [
        ("", pgettext_lazy("expiry", "Never")),
        ("7", _("In 7 days")),
        ("30", _("In 30 days")),
        ("90", _("In 90 days")),
        ("365", _("In one year")),
    ]

    name = forms.CharField(label=_("Token name"), max_length=100, required=False)
    scope = forms.ChoiceField(label=_("Access"), choices=ApiToken.Scope.choices, initial=ApiToken.Scope.WRITE)
    expires = forms.TypedChoiceField(
        label=_("Expires"), choices=EXPIRY_DAYS, required=False, coerce=int, empty_value=None
    )

    def expires_at(self) -> datetime | None:
        days = self.cleaned_data.get("expires")
        return timezone.now() + timedelta(days=days) if days else None


QUOTA_MAX = 2_147_483_647  # a PositiveIntegerField's largest value (panel.accounts.quotas.MAX_LIMIT)


class QuotaForm(forms.Form):
    """A customer's limits; an empty field means no limit."""

    # The column's maximum bounds each limit (a larger number is a form error, not a server error).
    servers = forms.IntegerField(label=_("Servers"), min_value=0, max_value=QUOTA_MAX, required=False)
    vcpus = forms.IntegerField(label=_("vCPUs"), min_value=0, max_value=QUOTA_MAX, required=False)
    memory_mib = forms.IntegerField(label=_("Memory (MiB)"), min_value=0, max_value=QUOTA_MAX, required=False)
    disk_gib = forms.IntegerField(label=_("Disk (GiB)"), min_value=0, max_value=QUOTA_MAX, required=False)
    snapshots = forms.IntegerField(label=_("Snapshots"), min_value=0, max_value=QUOTA_MAX, required=False)
    extra_ipv4 = forms.IntegerField(
        label=_("Additional IPv4 addresses"), min_value=0, max_value=QUOTA_MAX, required=False
    )
    backups = forms.IntegerField(
        label=_("Backups kept"),
        min_value=0,
        max_value=QUOTA_MAX,
        required=False,
        help_text=_("The backups kept by all of the customer's servers with backups turned on, added up."),
    )
