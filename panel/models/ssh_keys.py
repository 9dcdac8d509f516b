from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class SSHKey(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ssh_keys")
    name = models.CharField(_("name"), max_length=100)
    public_key = models.TextField(_("public key"))
    fingerprint = models.CharField(_("fingerprint"), max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        verbose_name = _("SSH key")
        constraints = [
            models.UniqueConstraint(fields=["owner", "fingerprint"], name="sshkey_unique_per_owner"),
        ]

    def __str__(self) -> str:
        return self.name
