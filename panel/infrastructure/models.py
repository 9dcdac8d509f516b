from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from hypervisor.models import Host
from panel.servers.models import Operation, Server


class Notice(models.Model):
    """Something admins should look at (a domain the panel does not know, allocation drift). One row per
    `key`: reporting the same thing again refreshes it; fixing it resolves it."""

    class Level(models.TextChoices):
        INFO = "info", _("Info")
        WARNING = "warning", _("Warning")
        ERROR = "error", _("Error")

    key = models.CharField(max_length=200, unique=True)
    level = models.CharField(max_length=10, choices=Level.choices, default=Level.WARNING)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-updated_at"]

    def __str__(self) -> str:
        return self.message

    @classmethod
    def report(cls, key: str, message: str, level: str = Level.WARNING) -> "Notice":
        notice, _created = cls.objects.update_or_create(
            key=key, defaults={"message": message, "level": level, "resolved_at": None}
        )
        return notice

    @classmethod
    def resolve(cls, key_prefix: str, keep: set[str] = frozenset()) -> int:
        """Resolve open notices whose key starts with the prefix, except those in `keep`."""
        return (
            cls.objects.filter(key__startswith=key_prefix, resolved_at__isnull=True)
            .exclude(key__in=keep)
            .update(resolved_at=timezone.now())
        )


class HostMove(models.Model):
    """Moving every server off a host (`panel.infrastructure.host_moves`): a drain migrates them (live when
    they run) from a host that answers and leaves it in maintenance; an evacuation rebuilds them elsewhere,
    from their latest backup or their image, when the host is down for good. Its items are the servers; a
    few move at a time. One move runs per host at a time."""

    class Kind(models.TextChoices):
        DRAIN = "drain", _("Drain")
        EVACUATE = "evacuate", _("Evacuation")

    class Status(models.TextChoices):
        RUNNING = "running", _("Running")
        FINISHED = "finished", _("Finished")

    host = models.ForeignKey(Host, on_delete=models.PROTECT, related_name="moves")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # What each migration of a drain is given: a bandwidth cap in MiB/s (0: none) and a time limit.
    max_bandwidth_mib = models.PositiveIntegerField(default=0)
    timeout_seconds = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["host"], condition=models.Q(status="running"), name="one_running_move_per_host"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} of {self.host_id} ({self.status})"


class HostMoveItem(models.Model):
    """One server of a host move: waiting for its turn, moving (its operation), moved, or failed with the
    reason (no room elsewhere, a state it cannot move from, what the hypervisor said)."""

    class Status(models.TextChoices):
        WAITING = "waiting", _("Waiting")
        MOVING = "moving", _("Moving")
        MOVED = "moved", _("Moved")
        FAILED = "failed", _("Could not move")

    move = models.ForeignKey(HostMove, on_delete=models.CASCADE, related_name="items")
    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.WAITING)
    operation = models.ForeignKey(
        Operation, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    target_host = models.ForeignKey(Host, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    # Stored in the source language (gettext_noop), shown translated.
    reason = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["move", "server"], name="host_move_item_unique")]
        indexes = [models.Index(fields=["move", "status"])]

    def __str__(self) -> str:
        return f"{self.server_id} in {self.move_id} ({self.status})"
