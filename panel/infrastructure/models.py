from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


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
