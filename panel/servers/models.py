import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.translation import gettext_lazy as _

from hypervisor.macs import random_mac
from hypervisor.models import IPAddress
from panel.servers import operation_states, states


class Server(models.Model):
    """A customer's VPS. Its id is also the libvirt domain UUID (the consumer UUID for placement)."""

    Status = states.Status
    Task = states.Task
    SuspendedBy = states.SuspendedBy
    PowerState = states.PowerState

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(_("hostname"), max_length=253)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="servers")
    plan = models.ForeignKey("billing.Plan", on_delete=models.PROTECT, related_name="+")
    image = models.ForeignKey("hypervisor.Image", on_delete=models.PROTECT, related_name="+")
    region = models.ForeignKey("hypervisor.Region", on_delete=models.PROTECT, related_name="+")
    # The installer ISO attached to the server (an Image of purpose iso), booted before its disk.
    iso = models.ForeignKey(
        "hypervisor.Image", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    host = models.ForeignKey(
        "hypervisor.Host", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    vcpus = models.PositiveIntegerField()
    memory_mib = models.PositiveIntegerField()
    disk_gib = models.PositiveIntegerField()
    # Allocated by the panel at order time (hypervisor.macs), unique across all servers.
    mac = models.CharField(_("MAC address"), max_length=17, unique=True, null=True, blank=True)
    ssh_keys = models.JSONField(default=list, blank=True, help_text=_("Public keys given at order time."))
    password_hash = models.CharField(max_length=200, blank=True, help_text="SHA-512 crypt hash for root")
    user_data = models.TextField(blank=True)
    # Whether the disk can grow while it has snapshots: disks made since qcow2 version 3 (compat 1.1) was
    # used can; older (version 2) ones cannot until a rebuild gives the server a new disk.
    disk_grows_with_snapshots = models.BooleanField(default=True)

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    task = models.CharField(max_length=20, choices=Task.choices, null=True, blank=True)
    power_state = models.CharField(max_length=20, choices=PowerState.choices, blank=True)
    # What the customer is told (plain words); status_detail is what staff see besides (the hypervisor's
    # own error, a staff suspension's reason), never shown to customers.
    status_reason = models.TextField(null=True, blank=True)
    status_detail = models.TextField(blank=True, default="")
    suspended_by = models.CharField(
        max_length=10,
        choices=SuspendedBy.choices,
        blank=True,
        help_text="who suspended it: staff, billing or transfer (only they lift it)",
    )
    bandwidth_error = models.TextField(
        blank=True, help_text="why the port speed could not be applied (staff)"
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("server")
        indexes = [
            models.Index(fields=["owner", "status"]),
            models.Index(fields=["host", "status"]),
            # The staff list and the admin API list: live servers, newest first.
            models.Index(
                models.F("created_at").desc(),
                name="server_live_recent_idx",
                condition=~models.Q(status=states.Status.DELETED),
            ),
            # The staff list filtered by a status (`?status=error`): that status's servers, newest first.
            models.Index(
                fields=["status", "-created_at"],
                name="server_status_recent_idx",
                condition=~models.Q(status=states.Status.DELETED),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        if not self.mac:
            self.mac = random_mac()
        super().save(*args, **kwargs)

    @property
    def domain_name(self) -> str:
        """The libvirt domain name: unique per host, unlike customers' hostnames."""
        return f"vps-{self.id}"

    @cached_property
    def ip_addresses(self) -> list:
        """The server's address rows, IPv4 first and the primary one of each family first (hypervisor IPAM
        knows the server by its UUID). Pages and the API fill it for many servers at once
        (panel.servers.queries)."""
        rows = IPAddress.objects.filter(consumer_uuid=self.id).select_related("pool")
        return sorted(rows, key=address_order)

    @property
    def ipv4_addresses(self) -> list:
        return [address for address in self.ip_addresses if address.family == 4]

    @property
    def ipv6_addresses(self) -> list:
        return [address for address in self.ip_addresses if address.family == 6]

    @property
    def ipv4(self) -> list[str]:
        return [address.address for address in self.ipv4_addresses]

    @property
    def ipv6(self) -> list[str]:
        return [address.address for address in self.ipv6_addresses]

    def forget_addresses(self) -> None:
        """Read the addresses anew on next use, not as they were last seen."""
        self.__dict__.pop("ip_addresses", None)


def address_order(address: IPAddress) -> tuple:
    """IPv4 before IPv6; in each family the primary address first, then the additional ones in the order
    they were taken."""
    taken = address.allocated_at.timestamp() if address.allocated_at else 0.0
    return (address.family, address.role != IPAddress.Role.PRIMARY, taken)


def default_deadline():
    return timezone.now() + timedelta(seconds=settings.OPERATION_DEADLINE)


def default_lease_expiry():
    """A new operation is waiting for its message to reach a worker: sent again if none began it by then."""
    return timezone.now() + timedelta(seconds=settings.OPERATION_DISPATCH_SECONDS)


class Operation(models.Model):
    """One action on a server. The row, not Celery, is the truth; its id is the Celery task id."""

    Type = states.Task
    Status = operation_states.Status

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="operations")
    type = models.CharField(max_length=20, choices=Type.choices)
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # `error` is the plain message customers see; `detail` what staff see (the hypervisor's own words).
    error = models.TextField(blank=True)
    detail = models.TextField(blank=True, default="")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField(default=default_deadline)
    # The step a long action is at (panel.servers.operation_steps), shown with its time budget, and since
    # when.
    step = models.CharField(max_length=30, blank=True, default="")
    step_at = models.DateTimeField(null=True, blank=True)
    # How far a long copy is (a backup, a restore): {"percent": 0-100, "bytes_done": n, "bytes_total": n}.
    progress = models.JSONField(default=dict, blank=True)
    # The lease (panel/servers/leases.py): the worker running the operation ("node/boot/pid") and until when
    # it holds it. No owner with an expiry: the operation waits for a worker (its message is in the queue,
    # or it waits for its turn on the host) and is sent again if none takes it by then.
    lease_owner = models.CharField(max_length=200, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True, default=default_lease_expiry)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["server", "-created_at"]),
            models.Index(fields=["status", "deadline"]),
            models.Index(fields=["status", "lease_expires_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.server_id} ({self.status})"

    @property
    def step_since(self):
        """Since when the operation is at its current step (since it began, when it records no step): what
        the step's time budget counts from."""
        return self.step_at if self.step and self.step_at else self.started_at

    @property
    def is_finished(self) -> bool:
        return self.status in operation_states.FINISHED


class Snapshot(models.Model):
    """An internal qcow2 snapshot of a server, made by a snapshot operation."""

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="snapshots")
    name = models.CharField(_("name"), max_length=64)
    libvirt_name = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["server", "libvirt_name"], name="snapshot_unique_per_server"),
        ]

    def __str__(self) -> str:
        return self.name


class Firewall(models.Model):
    """A server's inbound firewall and the version of its network filter (hypervisor.network_filter):
    every change that the filter on the host must follow (the rules, the default, the server's addresses)
    raises `version`; a worker applies it and records `applied_version`, so a change is applied once
    however often it is sent, and the periodic job sends again what is behind."""

    class Policy(models.TextChoices):
        ACCEPT = "accept", _("accept")
        DROP = "drop", _("drop")

    server = models.OneToOneField(Server, on_delete=models.CASCADE, primary_key=True, related_name="firewall")
    # [{"protocol": "tcp|udp|icmp|any", "ports": "22" | "8000-8100" | None, "sources": ["0.0.0.0/0"]}]
    inbound = models.JSONField(default=list, blank=True)
    default_inbound = models.CharField(max_length=6, choices=Policy.choices, default=Policy.ACCEPT)
    version = models.PositiveBigIntegerField(default=1)
    applied_version = models.PositiveBigIntegerField(default=0)
    applied_at = models.DateTimeField(null=True, blank=True)
    apply_error = models.TextField(blank=True, help_text="why the last attempt failed (staff)")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = _("firewall")
        indexes = [models.Index(fields=["applied_version", "version"], name="firewall_pending_idx")]

    def __str__(self) -> str:
        return f"firewall of {self.server_id}"

    @property
    def pending(self) -> bool:
        return self.applied_version < self.version
