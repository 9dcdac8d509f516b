import re
from datetime import datetime, timedelta
from decimal import Decimal

from django import forms
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from billing.models import Plan
from billing.money import CURRENCY_EXPONENTS, currency, quantize
from hypervisor import services as hypervisor
from hypervisor.models import Host, Image, Region

from . import throttling
from .activity import client_ip
from .models import ApiToken, SSHKey, User
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


class LoginForm(AuthenticationForm):
    """The login form with the failed-login lock-out of `panel.throttling`: the lock is checked before the
    password (the right password is refused while locked). After `is_valid()`, `throttled_for` holds the
    seconds to wait when the login was refused for that reason (the view answers 429), else None."""

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


MAX_PEM_BYTES = 64 * 1024

# libvirt object names (pools, networks) and Linux interface names (bridges), with no path separator.
LIBVIRT_NAME = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", _("Use letters, digits, dots, dashes and underscores.")
)
BRIDGE_NAME = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$",
    _("A bridge name has 1 to 15 letters, digits, dots, dashes or underscores, e.g. br0."),
)


def _absolute_path(value: str) -> None:
    if value and not value.startswith("/"):
        raise ValidationError(_("Give an absolute path, e.g. /var/lib/vpspanel/images."))


def _split_list(text: str, pattern: str) -> list[str]:
    return [part for part in (p.strip() for p in re.split(pattern, text or "")) if part]


def add_service_error(form: forms.Form, error: ValidationError, fields_by_code: dict[str, str]) -> None:
    """Attach a service's ValidationError to the form field its code names (or to the whole form)."""
    for item in error.error_list if hasattr(error, "error_list") else [error]:
        field = fields_by_code.get(getattr(item, "code", None) or "")
        form.add_error(field if field in form.fields else None, item)


class _HostPlacementFields(forms.Form):
    """Where a host keeps VPS disks and plugs VPS interfaces in (shared by the add and settings forms)."""

    storage_pool = forms.CharField(
        label=_("Storage pool"),
        max_length=100,
        initial="default",
        validators=[LIBVIRT_NAME],
        help_text=_("The libvirt storage pool for VPS disks."),
    )
    storage_pool_path = forms.CharField(
        label=_("Storage pool path"),
        max_length=255,
        required=False,
        validators=[_absolute_path],
        widget=forms.TextInput(attrs={"placeholder": "/var/lib/vpspanel/images"}),
        help_text=_("Optional: create a directory pool here if the pool does not exist."),
    )
    network = forms.CharField(
        label=_("libvirt network"),
        max_length=100,
        required=False,
        initial="default",
        validators=[LIBVIRT_NAME],
        help_text=_("The libvirt network VPS interfaces join…"),
    )
    bridge = forms.CharField(
        label=_("Bridge"),
        max_length=30,
        required=False,
        validators=[BRIDGE_NAME],
        widget=forms.TextInput(attrs={"placeholder": "br0"}),
        help_text=_("…or a host bridge; a bridge overrides the network."),
    )

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("network") and not cleaned.get("bridge") and not self.has_error("bridge"):
            self.add_error("network", _("Give a libvirt network or a bridge."))
        return cleaned


class HostForm(_HostPlacementFields):
    """An admin adds a host. The TLS files are read as text; hypervisor.services validates them."""

    name = forms.CharField(
        label=_("Name"), max_length=100, widget=forms.TextInput(attrs={"placeholder": "kvm1"})
    )
    uri = forms.CharField(
        label=_("libvirt URI"),
        max_length=500,
        widget=forms.TextInput(
            attrs={"placeholder": "qemu+ssh://root@203.0.113.10/system", "spellcheck": "false"}
        ),
    )
    region = forms.ModelChoiceField(label=_("Region"), queryset=Region.objects.all(), empty_label=None)
    tls_ca_cert = forms.FileField(label=_("CA certificate"), required=False, help_text="cacert.pem")
    tls_client_cert = forms.FileField(
        label=_("Client certificate"), required=False, help_text="clientcert.pem"
    )
    tls_client_key = forms.FileField(label=_("Client key"), required=False, help_text="clientkey.pem")

    field_order = ["name", "uri", "region"]
    TLS_FIELDS = ("tls_ca_cert", "tls_client_cert", "tls_client_key")
    # Which field a hypervisor.services.register_host ValidationError code belongs to.
    SERVICE_ERROR_FIELDS = {
        "invalid_uri": "uri",
        "invalid_name": "name",
        "duplicate": "name",
        "invalid_path": "storage_pool_path",
    }

    def clean_uri(self) -> str:
        return hypervisor.validate_uri(self.cleaned_data["uri"])

    def _pem_text(self, name: str) -> str:
        upload = self.cleaned_data.get(name)
        if not upload:
            return ""
        if upload.size > MAX_PEM_BYTES:
            raise ValidationError(_("This file is too large for a PEM certificate or key."))
        try:
            return upload.read().decode("ascii")
        except UnicodeDecodeError:
            raise ValidationError(_("Upload the PEM (text) file, not a binary one.")) from None

    def clean_tls_ca_cert(self) -> str:
        return self._pem_text("tls_ca_cert")

    def clean_tls_client_cert(self) -> str:
        return self._pem_text("tls_client_cert")

    def clean_tls_client_key(self) -> str:
        return self._pem_text("tls_client_key")

    @property
    def is_tls(self) -> bool:
        uri = self.data.get("uri", "") if self.is_bound else ""
        return hypervisor.uri_transport(uri) == "qemu+tls"

    def clean(self):
        cleaned = super().clean()
        if self.is_tls:
            for name in self.TLS_FIELDS:
                if name in cleaned and not cleaned[name]:
                    self.add_error(name, _("A qemu+tls:// host needs this file."))
        return cleaned

    def register_kwargs(self) -> dict:
        """The arguments of hypervisor.services.register_host."""
        data = self.cleaned_data
        tls = None
        if self.is_tls:
            tls = hypervisor.TLSMaterial(
                ca_cert=data["tls_ca_cert"],
                client_cert=data["tls_client_cert"],
                client_key=data["tls_client_key"],
            )
        return {
            "name": data["name"],
            "uri": data["uri"],
            "region": data["region"],
            "storage_pool": data["storage_pool"],
            "storage_pool_path": data["storage_pool_path"],
            "network": data["network"],
            "bridge": data["bridge"],
            "tls": tls,
        }


def _ratio_field(label):
    return forms.DecimalField(
        label=label, min_value=Decimal("0.1"), max_value=Decimal("999.99"), max_digits=5, decimal_places=2
    )


def _count_field(label, help_text=""):
    return forms.IntegerField(label=label, min_value=0, max_value=2_147_483_647, help_text=help_text)


class HostSettingsForm(_HostPlacementFields):
    """An admin's capacity policy and guest placement settings for one host."""

    cpu_allocation_ratio = _ratio_field(_("vCPU allocation ratio"))
    ram_allocation_ratio = _ratio_field(_("Memory allocation ratio"))
    disk_allocation_ratio = _ratio_field(_("Disk allocation ratio"))
    reserved_vcpus = _count_field(_("Reserved vCPUs"))
    reserved_memory_mib = _count_field(_("Reserved memory (MiB)"), _("Kept for the host itself."))
    reserved_disk_gib = _count_field(_("Reserved disk (GiB)"))
    force_emulation = forms.BooleanField(
        label=_("Force emulation"),
        required=False,
        help_text=_("Run guests under QEMU emulation even where KVM exists (for nested test hosts)."),
    )

    field_order = [
        "cpu_allocation_ratio",
        "ram_allocation_ratio",
        "disk_allocation_ratio",
        "reserved_vcpus",
        "reserved_memory_mib",
        "reserved_disk_gib",
    ]
    # Changing these takes effect once the host is probed again.
    PROBED_FIELDS = ("storage_pool", "storage_pool_path", "network", "bridge", "force_emulation")

    @classmethod
    def for_host(cls, host: Host, data=None) -> "HostSettingsForm":
        return cls(data, initial={name: getattr(host, name) for name in cls.base_fields})

    def changed_probed_fields(self, host: Host) -> list[str]:
        return [name for name in self.PROBED_FIELDS if self.cleaned_data[name] != getattr(host, name)]


class IPPoolForm(forms.Form):
    """An admin adds an IPv4 pool; hypervisor.ipam.create_pool validates the network itself."""

    region = forms.ModelChoiceField(label=_("Region"), queryset=Region.objects.all(), empty_label=None)
    name = forms.CharField(
        label=_("Name"),
        max_length=100,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "jkt-public-1"}),
        help_text=_("Optional; the network is used when empty."),
    )
    cidr = forms.CharField(
        label=_("Network (CIDR)"),
        max_length=43,
        widget=forms.TextInput(attrs={"placeholder": "203.0.113.0/24", "spellcheck": "false"}),
    )
    gateway = forms.CharField(
        label=_("Gateway"),
        max_length=15,
        widget=forms.TextInput(attrs={"placeholder": "203.0.113.1", "spellcheck": "false"}),
    )
    nameservers = forms.CharField(
        label=_("Nameservers"),
        max_length=500,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "1.1.1.1, 8.8.8.8", "spellcheck": "false"}),
        help_text=_("Separated by commas or spaces."),
    )
    excluded = forms.CharField(
        label=_("Excluded addresses"),
        max_length=20000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "203.0.113.2\n203.0.113.250-203.0.113.254"}),
        help_text=_("Never handed out. One per line or separated by commas; ranges like a.b.c.d-a.b.c.e."),
    )

    SERVICE_ERROR_FIELDS = {
        "invalid_cidr": "cidr",
        "too_large": "cidr",
        "overlap": "cidr",
        "invalid_gateway": "gateway",
        "invalid_nameserver": "nameservers",
        "invalid_excluded": "excluded",
        "no_usable_address": "excluded",
    }

    def clean_nameservers(self) -> list[str]:
        return _split_list(self.cleaned_data["nameservers"], r"[\s,;]+")

    def clean_excluded(self) -> list[str]:
        # Ranges may be written with spaces around the dash ("a - b"): join those before splitting.
        text = re.sub(r"\s*-\s*", "-", self.cleaned_data["excluded"] or "")
        return _split_list(text, r"[\s,;]+")

    def create_kwargs(self) -> dict:
        """The arguments of hypervisor.ipam.create_pool."""
        data = self.cleaned_data
        return {
            "region": data["region"],
            "name": data["name"],
            "cidr": data["cidr"],
            "gateway": data["gateway"],
            "nameservers": data["nameservers"],
            "excluded": data["excluded"],
        }


class PtrForm(forms.Form):
    """A customer sets (or clears, when empty) the reverse DNS name of one of their addresses."""

    address = forms.GenericIPAddressField(protocol="IPv4")
    ptr = forms.CharField(label=_("Reverse DNS name"), max_length=253, required=False)

    def clean_ptr(self) -> str:
        value = self.cleaned_data["ptr"].strip()
        return validate_hostname(value) if value else ""


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


class ImageForm(forms.Form):
    slug = forms.SlugField(
        label=_("Slug"), max_length=50, help_text=_("The name the API uses, e.g. debian-12.")
    )
    name = forms.CharField(label=_("Name"), max_length=100)
    os_family = forms.CharField(label=_("OS family"), max_length=40, help_text=_("debian, ubuntu, rhel, …"))
    path = forms.CharField(
        label=_("qcow2 file on the panel server"), max_length=500,
        widget=forms.TextInput(attrs={"placeholder": "debian-12.qcow2"}),
        help_text=_("A file in the image directory (the IMAGE_DIR setting); a relative path is taken there."),
    )  # fmt: skip
    kernel = forms.CharField(label=_("Kernel (direct kernel boot)"), max_length=500, required=False)
    initrd = forms.CharField(label=_("Initrd (direct kernel boot)"), max_length=500, required=False)
    cmdline = forms.CharField(label=_("Kernel command line"), max_length=500, required=False)


QUOTA_MAX = 2_147_483_647  # a PositiveIntegerField's largest value (panel.quotas.MAX_LIMIT)


class QuotaForm(forms.Form):
    """A customer's limits; an empty field means no limit."""

    # The column's maximum bounds each limit (a larger number is a form error, not a server error).
    servers = forms.IntegerField(label=_("Servers"), min_value=0, max_value=QUOTA_MAX, required=False)
    vcpus = forms.IntegerField(label=_("vCPUs"), min_value=0, max_value=QUOTA_MAX, required=False)
    memory_mib = forms.IntegerField(label=_("Memory (MiB)"), min_value=0, max_value=QUOTA_MAX, required=False)
    disk_gib = forms.IntegerField(label=_("Disk (GiB)"), min_value=0, max_value=QUOTA_MAX, required=False)
    snapshots = forms.IntegerField(label=_("Snapshots"), min_value=0, max_value=QUOTA_MAX, required=False)


# Billing: top-up, staff payments, adjustments and a customer's terms. Amounts are Decimal with the
# currency's precision (IDR: whole rupiah); billing.services moves the money.


def _money_field(label, *, min_value=None, required: bool = True, help_text: str = "") -> forms.DecimalField:
    return forms.DecimalField(
        label=label,
        min_value=min_value,
        max_digits=14,
        decimal_places=4,
        required=required,
        help_text=help_text,
    )


def _check_precision(amount: Decimal | None) -> Decimal | None:
    """Refuse an amount finer than the currency allows (a fraction of a rupiah, a tenth of a cent)."""
    if amount is None:
        return None
    if quantize(amount) != amount:
        places = CURRENCY_EXPONENTS.get(currency(), 2)
        if places == 0:
            raise ValidationError(
                _("%(currency)s has no minor unit: give a whole amount.") % {"currency": currency()}
            )
        raise ValidationError(
            _("Give at most %(places)s decimals.") % {"places": places},
        )
    return amount


def _money_widget_attrs(field: forms.Field) -> None:
    """The browser's number input steps by the currency's smallest unit. A step counts from `min`, so a
    positive minimum is that unit too (min 0.01 with step 1 would refuse every whole rupiah)."""
    places = CURRENCY_EXPONENTS.get(currency(), 2)
    unit = "1" if places == 0 else f"0.{'0' * (places - 1)}1"
    field.widget.attrs.update({"step": unit, "inputmode": "decimal"})
    if field.widget.attrs.get("min") not in (None, "0"):
        field.widget.attrs["min"] = unit


class TopUpForm(forms.Form):
    """A customer adds credit through a payment provider."""

    amount = _money_field(_("Amount"), min_value=Decimal("0.01"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _money_widget_attrs(self.fields["amount"])

    def clean_amount(self) -> Decimal:
        return _check_precision(self.cleaned_data["amount"])


class RecordPaymentForm(forms.Form):
    """Staff record money received (a bank transfer, cash); idempotent on the reference."""

    METHODS = [
        ("bank_transfer", _("Bank transfer")),
        ("cash", _("Cash")),
        ("other", _("Other")),
    ]

    amount = _money_field(_("Amount"), min_value=Decimal("0.01"))
    reference = forms.CharField(
        label=_("Reference"),
        max_length=100,
        help_text=_("The bank transfer's reference or a receipt number. Recording it twice adds nothing."),
    )
    method = forms.ChoiceField(label=_("Method"), choices=METHODS, initial="bank_transfer")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _money_widget_attrs(self.fields["amount"])

    def clean_amount(self) -> Decimal:
        return _check_precision(self.cleaned_data["amount"])

    def clean_reference(self) -> str:
        return self.cleaned_data["reference"].strip()


class AdjustmentForm(forms.Form):
    """A manual correction of a customer's balance: positive credits, negative charges."""

    amount = _money_field(
        _("Amount"), help_text=_("Positive adds credit; negative (e.g. -50000) charges the customer.")
    )
    reason = forms.CharField(
        label=_("Reason"),
        max_length=255,
        help_text=_("The customer sees it on their billing page; the ledger also records your name."),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _money_widget_attrs(self.fields["amount"])

    def clean_amount(self) -> Decimal:
        amount = _check_precision(self.cleaned_data["amount"])
        if amount == 0:
            raise ValidationError(_("An adjustment of zero changes nothing."))
        return amount

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise ValidationError(_("Say why the balance is adjusted."))
        return reason


class BillingTermsForm(forms.Form):
    """A customer's discount, and an optional custom monthly price per plan on sale."""

    discount_percent = forms.DecimalField(
        label=_("Discount (%)"),
        min_value=Decimal("0"),
        max_value=Decimal("100"),
        max_digits=5,
        decimal_places=2,
        help_text=_("Off the list price of every plan without a custom price."),
    )

    PRICE_PREFIX = "price_"

    def __init__(self, *args, plans, custom_prices: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.plans = list(plans)
        custom_prices = custom_prices or {}
        for plan in self.plans:
            name = self.PRICE_PREFIX + plan.slug
            self.fields[name] = _money_field(plan.name, min_value=Decimal("0"), required=False)
            self.fields[name].widget.attrs["placeholder"] = _("List price")
            _money_widget_attrs(self.fields[name])
            self.fields[name].plan = plan
            if plan.slug in custom_prices:
                self.initial.setdefault(name, Decimal(str(custom_prices[plan.slug])))

    def price_fields(self):
        return [self[self.PRICE_PREFIX + plan.slug] for plan in self.plans]

    def clean(self):
        cleaned = super().clean()
        for plan in self.plans:
            name = self.PRICE_PREFIX + plan.slug
            if cleaned.get(name) is not None:
                try:
                    cleaned[name] = _check_precision(cleaned[name])
                except ValidationError as exc:
                    self.add_error(name, exc)
        return cleaned

    def custom_prices(self, previous: dict | None = None) -> dict[str, str]:
        """The custom prices to keep: those given here, plus any for plans no longer on sale."""
        on_sale = {plan.slug for plan in self.plans}
        prices = {slug: price for slug, price in (previous or {}).items() if slug not in on_sale}
        for plan in self.plans:
            value = self.cleaned_data.get(self.PRICE_PREFIX + plan.slug)
            if value is not None:
                prices[plan.slug] = str(quantize(value))
        return prices
