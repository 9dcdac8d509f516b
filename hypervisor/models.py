from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _


class Region(models.Model):
    slug = models.SlugField(_("slug"), unique=True)
    name = models.CharField(_("name"), max_length=100)
    is_active = models.BooleanField(_("open for orders"), default=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("region")

    def __str__(self) -> str:
        return self.name


class Image(models.Model):
    """An operating system image customers can install."""

    slug = models.SlugField(_("slug"), unique=True)
    name = models.CharField(_("name"), max_length=100)
    os_family = models.CharField(_("OS family"), max_length=40)
    path = models.CharField(_("file on the panel server"), max_length=500, blank=True)
    is_active = models.BooleanField(_("available"), default=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("image")

    def __str__(self) -> str:
        return self.name


class Host(models.Model):
    """A KVM hypervisor reached through a libvirt URI."""

    class State(models.TextChoices):
        NEW = "new", _("New")
        PROBING = "probing", _("Probing")
        READY = "ready", _("Ready")
        ERROR = "error", _("Error")
        DOWN = "down", _("Down")

    name = models.CharField(_("name"), max_length=100, unique=True)
    uri = models.CharField(_("libvirt URI"), max_length=500)
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="hosts")
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.NEW)
    status_reason = models.TextField(_("reason"), blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    maintenance = models.BooleanField(_("maintenance"), default=False)
    force_emulation = models.BooleanField(
        _("force emulation"),
        default=False,
        help_text=_("Run guests under QEMU emulation even where KVM exists."),
    )
    storage_pool = models.CharField(_("storage pool"), max_length=100, default="default")
    network = models.CharField(_("network"), max_length=100, default="default")

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
    last_probed_at = models.DateTimeField(null=True, blank=True)

    # Capacity policy: capacity = (total - reserved) * ratio.
    reserved_vcpus = models.PositiveIntegerField(default=0)
    reserved_memory_mib = models.PositiveIntegerField(default=512)
    reserved_disk_gib = models.PositiveIntegerField(default=0)
    cpu_allocation_ratio = models.DecimalField(
        max_digits=5, decimal_places=2, default=Decimal("4.0"), validators=[MinValueValidator(Decimal("0.1"))]
    )
    ram_allocation_ratio = models.DecimalField(
        max_digits=5, decimal_places=2, default=Decimal("1.0"), validators=[MinValueValidator(Decimal("0.1"))]
    )
    disk_allocation_ratio = models.DecimalField(
        max_digits=5, decimal_places=2, default=Decimal("1.0"), validators=[MinValueValidator(Decimal("0.1"))]
    )

    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("host")

    def __str__(self) -> str:
        return self.name

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


class Allocation(models.Model):
    """Resources a consumer (a server, by its libvirt domain UUID) holds on a host."""

    consumer_uuid = models.UUIDField(unique=True)
    host = models.ForeignKey(Host, on_delete=models.PROTECT, related_name="allocations")
    vcpus = models.PositiveIntegerField()
    memory_mib = models.PositiveIntegerField()
    disk_gib = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["host"])]

    def __str__(self) -> str:
        return f"{self.consumer_uuid} on {self.host_id}"
