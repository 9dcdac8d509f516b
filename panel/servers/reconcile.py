"""Reconcile what Postgres believes with what each hypervisor reports (the hypervisor is the authority
for power state). Servers with a task in flight are skipped; every write is conditional on the server
still being idle in the status that was read.

`follow` is the decision for one server: given the power state observed on its host, which conditional
update to make. `reconcile_host` (beat, every 60 s) calls it for every watched server of a host after one
listing call; `panel.servers.power_events` calls it for a server whose domain sent a lifecycle event.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from hypervisor import driver
from hypervisor.connection import HypervisorError
from hypervisor.models import Host
from panel.models import Notice, Server
from panel.servers.states import PowerState, Status

log = logging.getLogger(__name__)
# Only idle running and stopped servers follow their domain: the other statuses are the panel's own
# (pending, provisioning, suspended, deleting) or wait for a person (error), or are final (deleted).
WATCHED = (Status.RUNNING, Status.STOPPED)
# The fields `follow` reads of a server (load them with `.only(*FOLLOWED_FIELDS)`).
FOLLOWED_FIELDS = ("id", "status", "power_state")


class Change(StrEnum):
    """What `follow` changed on a server."""

    STOPPED = "stopped"  # running -> stopped: the guest shut down or was destroyed behind the panel's back
    STARTED = "started"  # stopped -> running: the domain was started behind the panel's back
    VANISHED = "vanished"  # running or stopped -> error: the domain is gone from its host
    RECORDED = "recorded"  # the status stays; only the reported power state changed (paused, crashed...)


def follow(server: Server, observed: PowerState) -> Change | None:
    """Make an idle, watched server follow the power state observed on its host (`PowerState.NONE`: the
    host has no such domain). `server` is the row as read (its id, status and power state); the write is
    conditional on the server still having no task and still being in that status, so an operation that
    began since (and owns the server's state) wins. Returns what changed, or None when nothing did (no
    drift, a status that is not watched, or the server moved on since it was read)."""
    if server.status not in WATCHED:
        return None
    idle = Server.objects.filter(pk=server.pk, task__isnull=True, status=server.status)
    if observed == PowerState.NONE:
        changed = idle.update(
            status=Status.ERROR,
            power_state=PowerState.NONE,
            status_reason=gettext_noop("The virtual machine disappeared from its host."),
        )
        return Change.VANISHED if changed else None
    if observed == PowerState.SHUTOFF and server.status == Status.RUNNING:
        changed = idle.update(status=Status.STOPPED, power_state=observed, status_reason=None)
        return Change.STOPPED if changed else None
    if observed == PowerState.RUNNING and server.status == Status.STOPPED:
        changed = idle.update(status=Status.RUNNING, power_state=observed, status_reason=None)
        return Change.STARTED if changed else None
    if observed != server.power_state:
        return Change.RECORDED if idle.update(power_state=observed) else None
    return None


def reconcile_host(host: Host) -> dict[str, int]:
    """One listing call to the host, then conditional updates. Returns counts of what changed."""
    counts = {"stopped": 0, "started": 0, "vanished": 0, "unknown": 0}
    try:
        states = driver.domain_states(host)
    except HypervisorError as exc:
        log.warning("reconcile: host %s did not answer: %s", host.name, exc.message)
        return counts
    servers = Server.objects.filter(host=host, task__isnull=True, status__in=WATCHED).only(*FOLLOWED_FIELDS)
    for server in servers:
        change = follow(server, states.get(str(server.id), PowerState.NONE))
        if change is not None and change.value in counts:
            counts[change.value] += 1
    all_known = {
        str(pk)
        for pk in Server.objects.filter(host=host).exclude(status=Status.DELETED).values_list("id", flat=True)
    }
    unknown = sorted(set(states) - all_known)
    counts["unknown"] = len(unknown)
    keys = {f"unknown-domain:{host.pk}:{uuid}" for uuid in unknown}
    for uuid in unknown:
        Notice.report(
            f"unknown-domain:{host.pk}:{uuid}",
            _("Host %(host)s runs a domain the panel does not know (UUID %(uuid)s); it was left untouched.")
            % {"host": host.name, "uuid": uuid},
        )
    Notice.resolve(f"unknown-domain:{host.pk}:", keep=keys)
    if unknown:
        log.warning(
            "reconcile: host %s runs %d domain(s) the panel does not know: %s",
            host.name,
            len(unknown),
            ", ".join(unknown[:10]),
        )
    return counts
