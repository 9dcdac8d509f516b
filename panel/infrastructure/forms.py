"""Admin forms for the infrastructure: hosts, IP pools, images and backup targets."""

from __future__ import annotations

import re
from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from hypervisor import hosts
from hypervisor.models import BackupTarget, Host, Image, IPPool, Region
from panel.infrastructure import pools

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
    """An admin adds a host. The TLS files are read as text; hypervisor.hosts validates them."""

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
    # Which field a hypervisor.hosts.register_host ValidationError code belongs to.
    SERVICE_ERROR_FIELDS = {
        "invalid_uri": "uri",
        "invalid_name": "name",
        "duplicate": "name",
        "invalid_path": "storage_pool_path",
    }

    def clean_uri(self) -> str:
        return hosts.validate_uri(self.cleaned_data["uri"])

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
        return hosts.uri_transport(uri) == "qemu+tls"

    def clean(self):
        cleaned = super().clean()
        if self.is_tls:
            for name in self.TLS_FIELDS:
                if name in cleaned and not cleaned[name]:
                    self.add_error(name, _("A qemu+tls:// host needs this file."))
        return cleaned

    def register_kwargs(self) -> dict:
        """The arguments of hypervisor.hosts.register_host."""
        data = self.cleaned_data
        tls = None
        if self.is_tls:
            tls = hosts.TLSMaterial(
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

    migration_uri = forms.CharField(
        label=_("Migration URI"),
        max_length=500,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "qemu+tls://10.0.0.2/system", "spellcheck": "false"}),
        help_text=_("How other hosts' libvirtd reach this host to migrate servers here. Empty: its URI."),
    )
    migration_address = forms.CharField(
        label=_("Migration address"),
        max_length=255,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "tcp://10.0.0.2", "spellcheck": "false"}),
        help_text=_("Where migration data goes (a private network). Empty: libvirt's default."),
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
    def for_host(cls, host: Host, data=None) -> HostSettingsForm:
        return cls(data, initial={name: getattr(host, name) for name in cls.base_fields})

    def clean_migration_uri(self) -> str:
        return hosts.validate_migration_uri(self.cleaned_data["migration_uri"])

    def clean_migration_address(self) -> str:
        return hosts.validate_migration_address(self.cleaned_data["migration_address"])

    def changed_probed_fields(self, host: Host) -> list[str]:
        return [name for name in self.PROBED_FIELDS if self.cleaned_data[name] != getattr(host, name)]


def _split_excluded(text: str) -> list[str]:
    # Ranges may be written with spaces around the dash ("a - b"): join those before splitting.
    return _split_list(re.sub(r"\s*-\s*", "-", text or ""), r"[\s,;]+")


def _nameservers_field() -> forms.CharField:
    return forms.CharField(
        label=_("Nameservers"),
        max_length=500,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "1.1.1.1, 2606:4700:4700::1111", "spellcheck": "false"}),
        help_text=_("Separated by commas or spaces."),
    )


def _excluded_field() -> forms.CharField:
    return forms.CharField(
        label=_("Excluded addresses"),
        max_length=20000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "203.0.113.2\n203.0.113.250-203.0.113.254"}),
        help_text=_(
            "Never handed out. One per line or separated by commas: addresses, ranges like a.b.c.d-a.b.c.e "
            "or networks; in a pool of routed /64s, each /64 an entry touches."
        ),
    )


class IPPoolForm(forms.Form):
    """An admin adds an IPv4 or IPv6 pool; hypervisor.ipam.create_pool validates the network itself."""

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
        help_text=_("An IPv4 network (at most a /16) or an IPv6 prefix such as 2001:db8:100::/48."),
    )
    gateway = forms.CharField(
        label=_("Gateway"),
        max_length=45,
        widget=forms.TextInput(attrs={"placeholder": "203.0.113.1", "spellcheck": "false"}),
        help_text=_(
            "IPv4: inside the network. IPv6: fe80::1 (link-local, usual for routed /64s) or inside it."
        ),
    )
    assignment = forms.ChoiceField(
        label=_("IPv6 assignment"),
        required=False,
        choices=[("", _("Automatic")), *IPPool.Assignment.choices],
        help_text=_(
            "IPv6 only. A routed /64 per server takes a /44 to /63 (automatic for prefixes shorter than "
            "/64); one address per server takes a /64 or longer."
        ),
    )
    nameservers = _nameservers_field()
    excluded = _excluded_field()

    SERVICE_ERROR_FIELDS = pools.ERROR_FIELDS

    def clean_nameservers(self) -> list[str]:
        return _split_list(self.cleaned_data["nameservers"], r"[\s,;]+")

    def clean_excluded(self) -> list[str]:
        return _split_excluded(self.cleaned_data["excluded"])

    def create_kwargs(self) -> dict:
        """The keyword arguments of panel.infrastructure.pools.create_pool (hypervisor.ipam.create_pool's)."""
        data = self.cleaned_data
        return {
            "region": data["region"],
            "name": data["name"],
            "cidr": data["cidr"],
            "gateway": data["gateway"],
            "nameservers": data["nameservers"],
            "excluded": data["excluded"],
            "assignment": data["assignment"] or None,
        }


class IPPoolEditForm(forms.Form):
    """What an admin may change of a pool (hypervisor.ipam.update_pool); its network and gateway stay."""

    name = forms.CharField(label=_("Name"), max_length=100, required=False)
    nameservers = _nameservers_field()
    excluded = _excluded_field()
    is_active = forms.BooleanField(
        label=_("In use"),
        required=False,
        help_text=_("New servers get addresses only from pools in use; servers keep the ones they have."),
    )

    SERVICE_ERROR_FIELDS = pools.UPDATE_ERROR_FIELDS

    @classmethod
    def for_pool(cls, pool: IPPool, data=None) -> IPPoolEditForm:
        initial = {
            "name": pool.name,
            "nameservers": ", ".join(pool.nameservers or []),
            "excluded": "\n".join(pool.excluded or []),
            "is_active": pool.is_active,
        }
        form = cls(data, initial=initial)
        if pool.family == IPPool.Family.IPV6:
            routed = pool.assignment == IPPool.Assignment.PREFIX64
            example = "2001:db8:0:5::/64" if routed else "2001:db8::5\n2001:db8::10-2001:db8::20"
            form.fields["excluded"].widget.attrs["placeholder"] = example
        return form

    def clean_nameservers(self) -> list[str]:
        return _split_list(self.cleaned_data["nameservers"], r"[\s,;]+")

    def clean_excluded(self) -> list[str]:
        return _split_excluded(self.cleaned_data["excluded"])

    def update_kwargs(self) -> dict:
        """The keyword arguments of panel.infrastructure.pools.update_pool."""
        return {name: self.cleaned_data[name] for name in pools.CHANGEABLE}


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
    purpose = forms.ChoiceField(
        label=_("Purpose"), choices=Image.Purpose.choices, initial=Image.Purpose.OS, required=False,
        help_text=_("An ISO image is an .iso file customers attach to their servers and boot from."),
    )  # fmt: skip
    purpose.help_text = format_lazy(
        "{} {}",
        purpose.help_text,
        _(
            "A rescue system is a small Linux that rescue mode boots with the customer's disk attached; "
            "the newest available one is used. It must find its root file system on its own disk "
            "(/dev/vda), not by label or UUID: the customer's disk may carry the same ones."
        ),
    )

    def clean_purpose(self) -> str:
        return self.cleaned_data["purpose"] or Image.Purpose.OS


def _ssh_port_field() -> forms.IntegerField:
    return forms.IntegerField(label=_("SSH port"), min_value=1, max_value=65535, initial=22, required=False)


class BackupTargetForm(forms.Form):
    """An admin adds a backup target: a storage pool on a registered host, or a directory on a backup
    server over SSH (panel.infrastructure.backup_targets validates the rest and reads its host keys)."""

    name = forms.CharField(
        label=_("Name"), max_length=100, widget=forms.TextInput(attrs={"placeholder": "jkt-backup-1"})
    )
    kind = forms.ChoiceField(
        label=_("Kind"),
        choices=BackupTarget.Kind.choices,
        initial=BackupTarget.Kind.HOST_POOL,
        widget=forms.RadioSelect,
    )
    host = forms.ModelChoiceField(
        label=_("Host"),
        queryset=Host.objects.order_by("name"),
        required=False,
        help_text=_("Storage pool: a registered host other than the ones whose servers it protects."),
    )
    pool = forms.CharField(
        label=_("Storage pool"),
        max_length=100,
        required=False,
        initial="vpspanel-backups",
        validators=[LIBVIRT_NAME],
    )
    pool_path = forms.CharField(
        label=_("Storage pool path"),
        max_length=500,
        required=False,
        validators=[_absolute_path],
        widget=forms.TextInput(attrs={"placeholder": "/var/lib/vpspanel/backups"}),
        help_text=_("Optional: a directory pool is made here if the pool does not exist."),
    )
    ssh_address = forms.CharField(
        label=_("SSH address"),
        max_length=255,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "backup@192.0.2.20", "spellcheck": "false"}),
        help_text=_("SSH: user@host. The panel's SSH key must be in that user's authorized_keys."),
    )
    ssh_port = _ssh_port_field()
    directory = forms.CharField(
        label=_("Directory"),
        max_length=500,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "/srv/backups", "spellcheck": "false"}),
    )

    def clean_ssh_port(self) -> int:
        return self.cleaned_data["ssh_port"] or 22

    def create_kwargs(self) -> dict:
        """The keyword arguments of panel.infrastructure.backup_targets.create_target."""
        data = self.cleaned_data
        return {name: data[name] for name in (
            "name", "kind", "host", "pool", "pool_path", "ssh_address", "ssh_port", "directory"
        )}  # fmt: skip


class BackupTargetEditForm(forms.Form):
    """What an admin may change of a backup target: its kind stays, so only that kind's fields are on it."""

    name = forms.CharField(label=_("Name"), max_length=100)
    host = BackupTargetForm.base_fields["host"]
    pool = BackupTargetForm.base_fields["pool"]
    pool_path = BackupTargetForm.base_fields["pool_path"]
    ssh_address = BackupTargetForm.base_fields["ssh_address"]
    ssh_port = _ssh_port_field()
    directory = BackupTargetForm.base_fields["directory"]
    is_active = forms.BooleanField(
        label=_("In use"),
        required=False,
        help_text=_("Regions can choose only targets in use; the backups kept on it stay restorable."),
    )

    FIELDS_OF_KIND = {
        BackupTarget.Kind.HOST_POOL: ("name", "host", "pool", "pool_path", "is_active"),
        BackupTarget.Kind.SSH: ("name", "ssh_address", "ssh_port", "directory", "is_active"),
    }

    @classmethod
    def for_target(cls, target: BackupTarget, data=None) -> BackupTargetEditForm:
        fields = cls.FIELDS_OF_KIND[target.kind]
        form = cls(data, initial={name: getattr(target, name) for name in fields})
        for name in list(form.fields):
            if name not in fields:
                del form.fields[name]
        if target.kind == BackupTarget.Kind.HOST_POOL:
            form.fields["host"].required = True
        else:
            form.fields["ssh_address"].required = form.fields["directory"].required = True
        return form

    def clean_ssh_port(self) -> int:
        return self.cleaned_data["ssh_port"] or 22

    def update_kwargs(self) -> dict:
        """The keyword arguments of panel.infrastructure.backup_targets.update_target."""
        return dict(self.cleaned_data)


class RegionBackupTargetForm(forms.Form):
    """An admin chooses where a region's backups go (none: backups cannot be enabled there)."""

    region = forms.ModelChoiceField(label=_("Region"), queryset=Region.objects.all())
    target = forms.ModelChoiceField(
        label=_("Backup target"),
        queryset=BackupTarget.objects.filter(is_active=True),
        required=False,
        empty_label=_("None: no backups in this region"),
    )
