"""A domain's power state as the hypervisor reports it (Nova's `power_state`). The hypervisor is the
authority: the panel stores the last state reported and never invents one. `NONE` is "no domain" (not
created yet, or deleted)."""

from __future__ import annotations

import libvirt
from django.db import models
from django.utils.translation import gettext_lazy as _


class PowerState(models.TextChoices):
    NONE = "", _("No domain")
    NOSTATE = "nostate", _("Unknown")
    RUNNING = "running", _("Running")
    PAUSED = "paused", _("Paused")
    SHUTTING_DOWN = "shutting_down", _("Shutting down")
    SHUTOFF = "shutoff", _("Shut off")
    CRASHED = "crashed", _("Crashed")
    SUSPENDED = "suspended", _("Suspended by the guest")


# libvirt's virDomainState → the panel's power state (a blocked vCPU is still a running domain).
FROM_LIBVIRT: dict[int, PowerState] = {
    libvirt.VIR_DOMAIN_NOSTATE: PowerState.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: PowerState.SHUTTING_DOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: PowerState.SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: PowerState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: PowerState.SUSPENDED,
}


def from_libvirt(state: int) -> PowerState:
    return FROM_LIBVIRT.get(state, PowerState.NOSTATE)
