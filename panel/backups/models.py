"""Backups of servers, kept off their host on the region's backup target (hypervisor.BackupTarget), and each
server's backup policy. The rows are the truth: a backup is listed good (`succeeded`) only after its file
was copied to the target and its checksum verified there (panel.backups.runs)."""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from panel.servers.models import Operation, Server


class BackupPolicy(models.Model):
    """When a server is backed up and how many backups it keeps. Enabled, it is billed as the subscription
    add-on `backup` (billing.addons) and counts `retention` backups towards the customer's quota."""

    class Schedule(models.TextChoices):
        DAILY = "daily", _("Daily")
        WEEKLY = "weekly", _("Weekly")

    server = models.OneToOneField(
        Server, on_delete=models.CASCADE, primary_key=True, related_name="backup_policy"
    )
    enabled = models.BooleanField(_("enabled"), default=False)
    schedule = models.CharField(
        _("schedule"), max_length=10, choices=Schedule.choices, default=Schedule.DAILY
    )
    retention = models.PositiveSmallIntegerField(_("backups kept"), default=7)
    # The server's slot, spread over the backup hour (and the week): fixed from its id when the row is made.
    minute = models.PositiveSmallIntegerField(default=0)
    weekday = models.PositiveSmallIntegerField(default=0, help_text="0 is Monday")
    next_run_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("backup policy")
        indexes = [models.Index(fields=["enabled", "next_run_at"], name="backup_policy_due_idx")]

    def __str__(self) -> str:
        return f"backup policy of {self.server_id}"


class BackupQuerySet(models.QuerySet):
    def usable(self, now: datetime | None = None) -> BackupQuerySet:
        """Complete backups that may be restored or made into a new server: not going, or going later (a
        deleted server's backups during the grace period)."""
        now = now or timezone.now()
        return self.filter(status=Backup.Status.SUCCEEDED).filter(
            Q(delete_after__isnull=True) | Q(delete_after__gt=now)
        )


class Backup(models.Model):
    """One backup of a server's disk: a full image, or the blocks changed since its `parent` (incremental,
    through a libvirt checkpoint), compressed, on the target named when it was taken."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    class Kind(models.TextChoices):
        FULL = "full", _("Full")
        INCREMENTAL = "incremental", _("Incremental")

    class Trigger(models.TextChoices):
        SCHEDULED = "scheduled", _("Scheduled")
        MANUAL = "manual", _("Manual")

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="backups")
    operation = models.OneToOneField(
        Operation, on_delete=models.SET_NULL, null=True, blank=True, related_name="backup"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.FULL)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.MANUAL)
    # An incremental backup holds only the blocks changed since its parent: restoring it needs the chain.
    parent = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="children"
    )
    target = models.ForeignKey("hypervisor.BackupTarget", on_delete=models.PROTECT, related_name="backups")
    # The host it was taken on (a backup never stays there) and the file's name on the target.
    source_host = models.ForeignKey(
        "hypervisor.Host", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    location = models.CharField(max_length=255, blank=True)
    # The libvirt checkpoint this backup ends at (the next incremental starts from it).
    checkpoint = models.CharField(max_length=100, blank=True)
    # The compressed file's size and sha256 (verified on the target); the disk's size; the bytes the
    # backup job copied off the disk (an incremental copies only what changed).
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    disk_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    copied_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    # The server's sizes when it was taken (a new server from it needs a plan with at least this disk).
    disk_gib = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # Set when the backup is to go (pruned, or its server deleted: after the grace period); the file is
    # removed from the target, then the row. Such a backup is no longer listed.
    delete_after = models.DateTimeField(null=True, blank=True)

    objects = BackupQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("backup")
        indexes = [
            models.Index(fields=["server", "-created_at"], name="backup_server_idx"),
            models.Index(fields=["delete_after"], name="backup_delete_after_idx"),
        ]

    def __str__(self) -> str:
        return f"backup {self.pk} of {self.server_id} ({self.status})"

    @property
    def file_name(self) -> str:
        """The backup's file on its target."""
        return f"{self.server_id}-{self.pk}.qcow2.gz"

    @property
    def scratch_name(self) -> str:
        """The backup job's scratch volume in its host's own pool (deleted once copied off the host)."""
        return f"{self.server_id}-backup-{self.pk}.qcow2"
