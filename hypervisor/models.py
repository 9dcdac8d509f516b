import ipaddress
from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import ExpressionWrapper, F, Value
from django.db.models.functions import Cast, Floor, Greatest
from django.utils.translation import gettext_lazy as _

from . import base_volume_states, host_states


def ratio_field(verbose_name, default: str):
    return models.DecimalField(
        verbose_name,
        max_digits=5,
        decimal_places=2,
        default=Decimal(default),
        validators=[MinValueValidator(Decimal("0.1"))],
    )


class BackupTarget(models.Model):
    """Where a region's backups are kept, never on the host they protect (hypervisor.backup_targets): a
    storage pool on another registered host (reached through libvirt like any host), or a directory on a
    backup server reached over SSH with the panel's key."""

    class Kind(models.TextChoices):
        HOST_POOL = "host_pool", _("Storage pool on a host")
        SSH = "ssh", _("Directory over SSH")

    name = models.CharField(_("name"), max_length=100, unique=True)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    # host_pool: the registered host and its storage pool (a dir pool at `pool_path` is made when missing).
    host = models.ForeignKey(
        "Host", on_delete=models.PROTECT, null=True, blank=True, related_name="backup_targets",
        verbose_name=_("host"),
    )  # fmt: skip
    pool = models.CharField(_("storage pool"), max_length=100, blank=True, default="vpspanel-backups")
    pool_path = models.CharField(_("storage pool path"), max_length=500, blank=True)
    # ssh: user@address, port and the directory; the server's host keys are recorded when it is added.
    ssh_address = models.CharField(_("SSH address"), max_length=255, blank=True, help_text="user@host")
    ssh_port = models.PositiveIntegerField(_("SSH port"), default=22)
    directory = models.CharField(_("directory"), max_length=500, blank=True)
    ssh_host_keys = models.TextField(_("recorded SSH host keys"), blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The last check that the panel can write there (a worker's, hypervisor.backup_targets.record_check):
    # when, and why it failed ("" when it passed).
    checked_at = models.DateTimeField(null=True, blank=True)
    check_error = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("backup target")

    def __str__(self) -> str:
        return self.name


class Region(models.Model):
    slug = models.SlugField(_("slug"), unique=True)
    name = models.CharField(_("name"), max_length=100)
    is_active = models.BooleanField(_("open for orders"), default=True)
    # Where the backups of the region's servers go (none: backups cannot be enabled in the region).
    backup_target = models.ForeignKey(
        BackupTarget, on_delete=models.SET_NULL, null=True, blank=True, related_name="regions",
        verbose_name=_("backup target"),
    )  # fmt: skip

    # Defaults copied onto each host registered in the region.
    default_cpu_allocation_ratio = ratio_field(_("default vCPU allocation ratio"), "4.0")
    default_ram_allocation_ratio = ratio_field(_("default memory allocation ratio"), "1.0")
    default_disk_allocation_ratio = ratio_field(_("default disk allocation ratio"), "1.0")
    default_reserved_memory_mib = models.PositiveIntegerField(_("default reserved memory (MiB)"), default=512)

    class Meta:
        ordering = ["name"]
        verbose_name = _("region")

    def __str__(self) -> str:
        return self.name


class Image(models.Model):
    """An operating system image customers can install: a qcow2 file on the panel server, copied to each
    host's storage pool on first use. Images made for direct kernel boot also carry a kernel and initrd.
    The same goes for the rescue system and for installer ISOs (`purpose`)."""

    class Purpose(models.TextChoices):
        OS = "os", _("Operating system")
        RESCUE = "rescue", _("Rescue system")
        ISO = "iso", _("ISO image")

    slug = models.SlugField(_("slug"), unique=True)
    name = models.CharField(_("name"), max_length=100)
    os_family = models.CharField(_("OS family"), max_length=40)
    path = models.CharField(_("file on the panel server"), max_length=500, blank=True)
    checksum = models.CharField(_("SHA-256"), max_length=64, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    virtual_size_bytes = models.PositiveBigIntegerField(default=0)
    kernel_path = models.CharField(_("kernel file"), max_length=500, blank=True)
    kernel_checksum = models.CharField(max_length=64, blank=True)
    initrd_path = models.CharField(_("initrd file"), max_length=500, blank=True)
    initrd_checksum = models.CharField(max_length=64, blank=True)
    cmdline = models.CharField(_("kernel command line"), max_length=500, blank=True)
    is_active = models.BooleanField(_("available"), default=True)
    # What it is for: an operating system customers order and rebuild with, the rescue system that rescue
    # mode boots (with the server's own disk attached), or an installer ISO customers boot from.
    purpose = models.CharField(_("purpose"), max_length=10, choices=Purpose.choices, default=Purpose.OS)

    class Meta:
        ordering = ["name"]
        verbose_name = _("image")

    def __str__(self) -> str:
        return self.name


# The Host columns the allocation trigger keeps (see Host.used_vcpus).
USAGE_COUNTERS = ("used_vcpus", "used_memory_mib", "used_disk_gib")


def _free(total: str, reserved: str, ratio: str, used: str):
    """What a host has free of one resource, in SQL: Host._capacity (max(0, int((total - reserved) *
    ratio))) less what its allocations hold."""
    capacity = Greatest(
        Cast(Floor((F(total) - F(reserved)) * F(ratio)), models.BigIntegerField()),
        Value(0),
        output_field=models.BigIntegerField(),
    )
    return ExpressionWrapper(capacity - F(used), output_field=models.BigIntegerField())


class Host(models.Model):
    """A KVM hypervisor reached through a libvirt URI."""

    State = host_states.State
    DisabledBy = host_states.DisabledBy

    name = models.CharField(_("name"), max_length=100, unique=True)
    uri = models.CharField(_("libvirt URI"), max_length=500)
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="hosts")
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.NEW)
    status_reason = models.TextField(_("reason"), blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    disabled_by = models.CharField(
        max_length=10, choices=DisabledBy.choices, default=DisabledBy.NOBODY, blank=True
    )
    disabled_reason = models.CharField(_("why disabled"), max_length=255, blank=True)
    maintenance = models.BooleanField(_("maintenance"), default=False)
    force_emulation = models.BooleanField(
        _("force emulation"),
        default=False,
        help_text=_("Run guests under QEMU emulation even where KVM exists."),
    )
    storage_pool = models.CharField(_("storage pool"), max_length=100, default="default")
    storage_pool_path = models.CharField(
        _("storage pool path"),
        max_length=255,
        blank=True,
        help_text=_("If the pool does not exist, create a directory pool here."),
    )
    network = models.CharField(_("libvirt network"), max_length=100, default="default", blank=True)
    bridge = models.CharField(
        _("bridge"),
        max_length=30,
        blank=True,
        help_text=_("A host bridge (e.g. br0); overrides the network."),
    )

    # How other hosts' libvirtd reach this one when a server migrates here (peer-to-peer: the source's
    # daemon connects to the destination's), and the address the migration's data stream goes to.
    migration_uri = models.CharField(
        _("migration URI"),
        max_length=500,
        blank=True,
        help_text=_(
            "The libvirt URI other hosts use to migrate servers here, e.g. qemu+tls://10.0.0.2/system. "
            "Empty: the host's URI."
        ),
    )
    migration_address = models.CharField(
        _("migration address"),
        max_length=255,
        blank=True,
        help_text=_("Where the migration data stream goes, e.g. tcp://10.0.0.2. Empty: libvirt's default."),
    )

    # Connection material. Secrets are encrypted (hypervisor.secrets).
    ssh_host_keys = models.TextField(_("recorded SSH host keys"), blank=True)
    tls_ca_cert = models.TextField(blank=True)
    tls_client_cert = models.TextField(blank=True)
    tls_client_key = models.TextField(blank=True, help_text="encrypted")

    # What probing found.
    vcpus_total = models.PositiveIntegerField(default=0)
    memory_mib_total = models.PositiveBigIntegerField(default=0)
    disk_gib_total = models.PositiveBigIntegerField(default=0)
    memory_mib_free = models.PositiveBigIntegerField(default=0)
    domain_type = models.CharField(max_length=20, blank=True)
    arch = models.CharField(max_length=20, blank=True)
    cpu_model = models.CharField(max_length=100, blank=True)
    libvirt_version = models.CharField(max_length=40, blank=True)
    hypervisor_version = models.CharField(max_length=80, blank=True)
    inventory = models.JSONField(
        default=dict, blank=True, help_text="storage pools and networks seen by the probe"
    )
    last_probed_at = models.DateTimeField(null=True, blank=True)

    shaping_error = models.TextField(
        _("traffic shaping"),
        blank=True,
        help_text=_("Why the host cannot limit port speeds (cleared by a probe)."),
    )

    # What the host's allocations hold: kept by a database trigger on hypervisor_allocation (migration 0005),
    # in the transaction that inserts, changes or deletes an allocation, so that placement reads them in
    # constant time. Never written by the application.
    used_vcpus = models.PositiveIntegerField(default=0, editable=False)
    used_memory_mib = models.PositiveBigIntegerField(default=0, editable=False)
    used_disk_gib = models.PositiveBigIntegerField(default=0, editable=False)
    # What it can still take (capacity less usage), computed by Postgres on every write of the row and
    # indexed, so that placement picks the best host of a region from an index.
    free_vcpus = models.GeneratedField(
        expression=_free("vcpus_total", "reserved_vcpus", "cpu_allocation_ratio", "used_vcpus"),
        output_field=models.BigIntegerField(),
        db_persist=True,
    )
    free_memory_mib = models.GeneratedField(
        expression=_free(
            "memory_mib_total", "reserved_memory_mib", "ram_allocation_ratio", "used_memory_mib"
        ),
        output_field=models.BigIntegerField(),
        db_persist=True,
    )
    free_disk_gib = models.GeneratedField(
        expression=_free("disk_gib_total", "reserved_disk_gib", "disk_allocation_ratio", "used_disk_gib"),
        output_field=models.BigIntegerField(),
        db_persist=True,
    )

    # Health.
    last_seen_at = models.DateTimeField(null=True, blank=True)
    failed_checks = models.PositiveIntegerField(default=0)

    # Capacity policy: capacity = (total - reserved) * ratio.
    reserved_vcpus = models.PositiveIntegerField(_("reserved vCPUs"), default=0)
    reserved_memory_mib = models.PositiveIntegerField(_("reserved memory (MiB)"), default=512)
    reserved_disk_gib = models.PositiveIntegerField(_("reserved disk (GiB)"), default=0)
    cpu_allocation_ratio = ratio_field(_("vCPU allocation ratio"), "4.0")
    ram_allocation_ratio = ratio_field(_("memory allocation ratio"), "1.0")
    disk_allocation_ratio = ratio_field(_("disk allocation ratio"), "1.0")

    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("host")
        indexes = [
            # Placement: a region's schedulable hosts by free memory (spread walks it forwards, pack
            # backwards).
            models.Index(
                "region",
                models.F("free_memory_mib").desc(),
                "id",
                name="host_placement",
                condition=models.Q(enabled=True, maintenance=False, state="ready"),
            )
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        """Save the row, never its usage counters (the trigger keeps them; the values this instance read may
        be stale by now)."""
        if not self._state.adding and kwargs.get("update_fields") is None:
            deferred = self.get_deferred_fields()
            kwargs["update_fields"] = [
                field.name
                for field in self._meta.concrete_fields
                if not field.primary_key
                and not field.generated
                and field.name not in USAGE_COUNTERS
                and field.attname not in deferred
            ]
        super().save(*args, **kwargs)

    @staticmethod
    def _capacity(total: int, reserved: int, ratio: Decimal) -> int:
        return max(0, int((Decimal(total) - Decimal(reserved)) * ratio))

    @property
    def capacity(self) -> dict[str, int]:
        return {
            "vcpus": self._capacity(self.vcpus_total, self.reserved_vcpus, self.cpu_allocation_ratio),
            "memory_mib": self._capacity(
                self.memory_mib_total, self.reserved_memory_mib, self.ram_allocation_ratio
            ),
            "disk_gib": self._capacity(
                self.disk_gib_total, self.reserved_disk_gib, self.disk_allocation_ratio
            ),
        }

    @property
    def schedulable(self) -> bool:
        return self.enabled and not self.maintenance and self.state == self.State.READY

    @property
    def transport(self) -> str:
        """The URI's scheme in lower case (libvirt reads it so; validation stores it so)."""
        return self.uri.split(":", 1)[0].lower()


class PanelKeyPair(models.Model):
    """The panel's own SSH key pair for reaching hosts over qemu+ssh://. The private key is encrypted."""

    name = models.CharField(max_length=50, unique=True, default="default")
    public_key = models.TextField()
    private_key = models.TextField(help_text="encrypted OpenSSH private key")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Allocation(models.Model):
    """Resources a consumer (a server, by its libvirt domain UUID) holds on a host. A consumer holds one,
    except while it migrates: then also one on the destination, until the switch-over releases the
    source's (or a rollback the destination's)."""

    consumer_uuid = models.UUIDField()
    host = models.ForeignKey(Host, on_delete=models.PROTECT, related_name="allocations")
    vcpus = models.PositiveIntegerField()
    memory_mib = models.PositiveIntegerField()
    disk_gib = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["host"])]
        constraints = [
            models.UniqueConstraint(fields=["consumer_uuid", "host"], name="allocation_consumer_host_unique")
        ]

    def __str__(self) -> str:
        return f"{self.consumer_uuid} on {self.host_id}"


class IPPool(models.Model):
    """Addresses of a region that servers get at order time: an IPv4 network, or an IPv6 prefix from which
    each server gets its own routed /64 (`assignment` prefix64) or one address of an on-link /64
    (`assignment` address)."""

    class Family(models.IntegerChoices):
        IPV4 = 4, _("IPv4")
        IPV6 = 6, _("IPv6")

    class Assignment(models.TextChoices):
        ADDRESS = "address", _("One address per server")
        PREFIX64 = "prefix64", _("A routed /64 per server")

    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="ip_pools")
    name = models.CharField(_("name"), max_length=100)
    family = models.PositiveSmallIntegerField(_("family"), choices=Family.choices, default=Family.IPV4)
    assignment = models.CharField(
        _("assignment"), max_length=10, choices=Assignment.choices, default=Assignment.ADDRESS
    )
    cidr = models.CharField(_("network (CIDR)"), max_length=43)
    gateway = models.GenericIPAddressField(_("gateway"))
    nameservers = models.JSONField(_("nameservers"), default=list, blank=True)
    excluded = models.JSONField(_("excluded addresses"), default=list, blank=True)
    is_active = models.BooleanField(_("in use"), default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["region", "name"]
        verbose_name = _("IP pool")
        constraints = [models.UniqueConstraint(fields=["cidr"], name="ippool_unique_cidr")]

    def __str__(self) -> str:
        return f"{self.name} ({self.cidr})"


class IPPoolCount(models.Model):
    """Changes of a pool's address counts (rows, taken, reserved), written by statement triggers on
    hypervisor_ipaddress (migration 0006): every statement that inserts, changes or deletes addresses adds
    one row per pool it touched, so concurrent orders never wait on a shared counter. A pool's counts are
    the sums of its rows (hypervisor.pool_counts); the beat folds them into one row per pool every minute.
    No foreign key: a deleted pool's rows go with the next fold."""

    pool_id = models.BigIntegerField()
    total = models.IntegerField(default=0)
    used = models.IntegerField(default=0)
    reserved = models.IntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["pool_id"])]

    def __str__(self) -> str:
        return f"pool {self.pool_id}: {self.total:+} rows, {self.used:+} taken, {self.reserved:+} reserved"


class IPAddress(models.Model):
    """One assignable unit of a pool: an IPv4 address, an IPv6 address (`prefix_length` 128) or a routed
    IPv6 /64 (`prefix_length` 64, `address` is the server's address in it: the /64's ::1). Free, held by a
    consumer (a server's UUID), or cooling down. A server has one primary address per family and may hold
    additional IPv4 addresses, which can float to another of the owner's servers in the region."""

    class Role(models.TextChoices):
        PRIMARY = "primary", _("primary")
        ADDITIONAL = "additional", _("additional")

    class PtrState(models.TextChoices):
        NONE = "", _("not pushed")
        PENDING = "pending", _("pending")
        PUSHED = "pushed", _("published")
        FAILED = "failed", _("failed")

    pool = models.ForeignKey(IPPool, on_delete=models.CASCADE, related_name="addresses")
    address = models.GenericIPAddressField(unique=True)
    prefix_length = models.PositiveSmallIntegerField(
        default=32, help_text="32 for IPv4, 128 for one IPv6 address, 64 for a routed /64"
    )
    value = models.DecimalField(
        max_digits=40, decimal_places=0, help_text="the address as an integer, for ordering"
    )
    consumer_uuid = models.UUIDField(null=True, blank=True)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.PRIMARY)
    allocated_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    reserved = models.BooleanField(default=False, help_text="excluded by an admin")
    ptr = models.CharField(_("reverse DNS name"), max_length=253, blank=True)
    # Publishing the PTR record to the DNS server (hypervisor.reverse_dns), when one is configured.
    ptr_state = models.CharField(max_length=10, choices=PtrState.choices, blank=True, default="")
    ptr_error = models.TextField(blank=True)
    ptr_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["value"]
        verbose_name = _("IP address")
        indexes = [
            models.Index(fields=["consumer_uuid"]),
            models.Index(fields=["pool", "consumer_uuid", "value"]),
            models.Index(fields=["pool", "value", "id"], name="ipaddress_pool_order"),  # a pool's page
            # A pool's addresses cooling down after a release (hypervisor.pool_counts).
            models.Index(
                fields=["pool", "released_at"],
                name="ipaddress_cooling",
                condition=models.Q(consumer_uuid__isnull=True, reserved=False, released_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.address

    @property
    def family(self) -> int:
        return 6 if ":" in self.address else 4

    @property
    def assigned_network(self) -> str:
        """What the consumer may use as its source: its routed /64, or its one address (/32, /128)."""
        return str(ipaddress.ip_network(f"{self.address}/{self.prefix_length}", strict=False))


class BaseVolume(models.Model):
    """An image's file (disk, kernel or initrd) copied into a host's storage pool and verified.

    The row is the lock for the upload: one worker inserts it as `uploading`; others wait. A stale upload
    (its worker died) is taken over after a while."""

    State = base_volume_states.State

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="base_volumes")
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="base_volumes")
    kind = models.CharField(max_length=10, default="disk")  # disk, kernel, initrd
    volume_name = models.CharField(max_length=200)
    path = models.CharField(max_length=500, blank=True)
    checksum = models.CharField(max_length=64)
    state = models.CharField(max_length=10, choices=State.choices, default=State.UPLOADING)
    owner = models.CharField(max_length=64, blank=True, help_text="the operation copying it")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["host", "volume_name"], name="basevolume_unique_per_host"),
        ]

    def __str__(self) -> str:
        return f"{self.volume_name} on {self.host_id} ({self.state})"
