"""Server forms: the order form and reverse DNS."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from billing.models import Plan
from hypervisor.models import Image, Region
from panel.models import SSHKey, User
from panel.servers.validators import validate_hostname


class PlanChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, plan: Plan) -> str:
        return plan.name


class OrderForm(forms.Form):
    name = forms.CharField(
        label=_("Hostname"), max_length=253, widget=forms.TextInput(attrs={"placeholder": "web1.example.com"})
    )
    plan = PlanChoiceField(
        label=_("Plan"),
        queryset=Plan.objects.filter(is_active=True),
        widget=forms.RadioSelect,
        empty_label=None,
    )
    image = forms.ModelChoiceField(
        label=_("Image"),
        queryset=Image.objects.filter(is_active=True),
        widget=forms.RadioSelect,
        empty_label=None,
    )
    region = forms.ModelChoiceField(
        label=_("Region"), queryset=Region.objects.filter(is_active=True), empty_label=None
    )
    ssh_keys = forms.ModelMultipleChoiceField(
        label=_("SSH keys"),
        queryset=SSHKey.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    password = forms.CharField(
        label=_("Root password (optional)"),
        required=False,
        min_length=8,
        max_length=128,
        strip=False,
        # Never sent back to the browser, also not when the form comes back with errors.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("At least 8 characters. Leave empty to log in with SSH keys only."),
    )
    user_data = forms.CharField(
        label=_("User data (optional)"),
        required=False,
        max_length=65536,
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "#cloud-config"}),
    )

    def __init__(self, *args, user: User, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["ssh_keys"].queryset = SSHKey.objects.filter(owner=user)

    def clean_name(self) -> str:
        return validate_hostname(self.cleaned_data["name"])


class PtrForm(forms.Form):
    """A customer sets (or clears, when empty) the reverse DNS name of one of their addresses."""

    address = forms.GenericIPAddressField(protocol="IPv4")
    ptr = forms.CharField(label=_("Reverse DNS name"), max_length=253, required=False)

    def clean_ptr(self) -> str:
        value = self.cleaned_data["ptr"].strip()
        return validate_hostname(value) if value else ""
