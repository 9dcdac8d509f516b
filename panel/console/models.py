from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class ConsoleSession(models.Model):
    """One console opening: a single-use token (only its SHA-256 is stored) bound to a user, a server and a
    console type, redeemed once by the console proxy before `expires_at`."""

    class Type(models.TextChoices):
        VNC = "vnc", _("Graphical console")
        SERIAL = "serial", _("Serial console")

    token_hash = models.CharField(max_length=64, unique=True)
    server = models.ForeignKey("panel.Server", on_delete=models.CASCADE, related_name="console_sessions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    type = models.CharField(max_length=10, choices=Type.choices)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    # Where it was asked for: the address of the request and the origin of the page that asked.
    ip = models.GenericIPAddressField(null=True, blank=True)
    origin = models.CharField(max_length=300, blank=True)
    # Set once, by the compare-and-swap that redeems the token; the address the websocket came from.
    connected_at = models.DateTimeField(null=True, blank=True)
    connected_ip = models.GenericIPAddressField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["server", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.type} console of {self.server_id} for {self.user_id}"
