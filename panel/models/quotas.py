from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Quota(models.Model):
    """What a customer may hold at most; an empty limit means no limit."""

    RESOURCES = ("servers", "vcpus", "memory_mib", "disk_gib", "snapshots")

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quota")
    servers = models.PositiveIntegerField(_("servers"), null=True, blank=True)
    vcpus = models.PositiveIntegerField(_("vCPUs"), null=True, blank=True)
    memory_mib = models.PositiveIntegerField(_("memory (MiB)"), null=True, blank=True)
    disk_gib = models.PositiveIntegerField(_("disk (GiB)"), null=True, blank=True)
    snapshots = models.PositiveIntegerField(_("snapshots"), null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("quota")

    def __str__(self) -> str:
        return f"quota of {self.user_id}"

    def limits(self) -> dict[str, int | None]:
        return {name: getattr(self, name) for name in self.RESOURCES}
