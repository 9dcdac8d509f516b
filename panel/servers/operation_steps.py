"""The steps of long actions, as the server page names them with their time budget ("Waiting for the guest
to shut down; it is forced off after 60 seconds"). A worker records the step it enters
(panel.servers.operations.announce); the page shows it with the time spent on it so far."""

from __future__ import annotations

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

GROW_DISK = "grow_disk"
CONFIGURE = "configure"
GUEST_SHUTDOWN = "guest_shutdown"
GUEST_REBOOT = "guest_reboot"
BOOT = "boot"
PREPARE_DISK = "prepare_disk"
POWER_OFF = "power_off"
COPY_ISO = "copy_iso"
PREPARE_RESCUE = "prepare_rescue"
GUEST_AGENT = "guest_agent"
BACKUP_DISK = "backup_disk"
BACKUP_COPY = "backup_copy"
FETCH_BACKUP = "fetch_backup"
WRITE_DISK = "write_disk"

_LABELS = {
    GROW_DISK: gettext_lazy("Growing the disk"),
    CONFIGURE: gettext_lazy("Applying the new size"),
    BOOT: gettext_lazy("Starting the server"),
    PREPARE_DISK: gettext_lazy("Preparing a fresh disk from the image"),
    POWER_OFF: gettext_lazy("Powering the server off"),
    COPY_ISO: gettext_lazy("Copying the ISO image to the server's host"),
    PREPARE_RESCUE: gettext_lazy("Preparing the rescue system"),
    BACKUP_DISK: gettext_lazy("Backing up the disk while the server runs"),
    BACKUP_COPY: gettext_lazy("Compressing the backup and copying it to backup storage"),
    FETCH_BACKUP: gettext_lazy("Fetching the backup from backup storage"),
    WRITE_DISK: gettext_lazy("Writing the restored disk"),
}


def label(step: str) -> str:
    """What the step is doing, with its budget where it has one; "" for no or an unknown step."""
    if step == GUEST_SHUTDOWN:
        return _("Waiting for the guest to shut down; it is forced off after %(seconds)s seconds") % {
            "seconds": settings.SHUTDOWN_TIMEOUT
        }
    if step == GUEST_REBOOT:
        return _("Waiting for the guest to restart; it is reset after %(seconds)s seconds") % {
            "seconds": settings.REBOOT_TIMEOUT
        }
    if step == GUEST_AGENT:
        return _("Waiting for the guest agent to set the password; it gives up after %(seconds)s seconds") % {
            "seconds": settings.GUEST_AGENT_TIMEOUT
        }
    return str(_LABELS.get(step, ""))
