"""Server forms: the order form (from an image, or from a backup) and reverse DNS."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from billing.models import Plan
from hypervisor import reverse_dns
from hypervisor.models import Region
from panel.models import Backup, SSHKey, User
from panel.servers import catalog
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
        queryset=catalog.active_images(),
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
        label=_("Root password"),
        required=False,
        min_length=8,
        max_length=128,
        strip=False,
        # Never sent back to the browser, also not when the form comes back with errors.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_(
            "At least 8 characters. Needed when you choose no SSH key; leave it empty to log in with keys "
            "only."
        ),
    )
    user_data = forms.CharField(
        label=_("User data (optional)"),
        required=False,
        max_length=65536,
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "#cloud-config"}),
    )

    def __init__(self, *args, user: User, backup: Backup | None = None, **kwargs):
        """`backup`: a new server from that backup (one of the user's, succeeded): no image is chosen, and
        only plans whose disk holds the backup are offered."""
        super().__init__(*args, **kwargs)
        self.backup = backup
        if backup is not None:
            del self.fields["image"]
            self.fields["plan"].queryset = self.fields["plan"].queryset.filter(disk_gib__gte=backup.disk_gib)
        keys = SSHKey.objects.filter(owner=user)
        self.fields["ssh_keys"].queryset = keys
        if not self.is_bound:
            only = list(keys.values_list("pk", flat=True)[:2])
            if len(only) == 1:  # the customer's only key is what they will log in with
                self.initial["ssh_keys"] = only

    def clean(self) -> dict:
        data = super().clean()
        if self.backup is not None:
            data["image"], data["backup"] = None, self.backup
        if not data.get("ssh_keys") and not data.get("password") and "password" not in self.errors:
            # Shown in the Access step, under the keys.
            self.add_error(
                "ssh_keys",
                forms.ValidationError(
                    _(
                        "Choose an SSH key or set a root password: without either, nobody can log in to the "
                        "server."
                    ),
                    code="no_login",
                ),
            )
        return data

    def clean_name(self) -> str:
        return validate_hostname(self.cleaned_data["name"])


class PtrForm(forms.Form):
    """A customer sets (or clears, when empty) the reverse DNS name of one of their addresses, IPv4 or
    IPv6 (panel.servers.reverse_dns checks that the server has it)."""

    address = forms.GenericIPAddressField(protocol="both")
    ptr = forms.CharField(label=_("Reverse DNS name"), max_length=253, required=False)

    def clean_ptr(self) -> str:
        return reverse_dns.validate_name(self.cleaned_data["ptr"])
