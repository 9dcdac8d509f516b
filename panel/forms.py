from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from billing.models import Plan
from hypervisor import services as hypervisor
from hypervisor.models import Image, Region

from .models import SSHKey, User
from .openssh import parse_public_key
from .validators import validate_hostname


class SignupForm(UserCreationForm):
    class Meta:
        model = User
        fields = ["email"]

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        if User.objects.filter(email=email).exists():
            raise ValidationError(_("An account with this email exists already."))
        return email


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


class HostForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100)
    uri = forms.CharField(
        label=_("libvirt URI"),
        max_length=500,
        widget=forms.TextInput(attrs={"placeholder": "qemu+ssh://root@203.0.113.10/system"}),
    )
    region = forms.ModelChoiceField(label=_("Region"), queryset=Region.objects.all(), empty_label=None)

    def clean_uri(self) -> str:
        return hypervisor.validate_uri(self.cleaned_data["uri"])


class HostSettingsForm(forms.Form):
    enabled = forms.BooleanField(label=_("Enabled"), required=False)
    maintenance = forms.BooleanField(label=_("Maintenance"), required=False)


class ApiTokenForm(forms.Form):
    name = forms.CharField(label=_("Token name"), max_length=100, required=False)
