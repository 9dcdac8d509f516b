"""Reconcile what Postgres believes with what each hypervisor reports (the hypervisor is the authority
for power state). Servers with a task in flight are skipped; every write is conditional on the server
still being idle in the status that was read.

`decide` is the decision for one server: given the power state observed on its host, which change to make.
`follow` makes it for one server (`panel.servers.power_events` calls it for a server whose domain sent a
lifecycle event); `reconcile_host` (beat, every 60 s, a task per host) makes it for every watched server of
a host after one listing call, in one conditional update per kind of change.
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
from panel.servers.states import PowerState, Status, Task

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


def decide(status: str, power_state: str, observed: PowerState) -> tuple[Change, dict[str, object]] | None:
    """What an idle server in `status` (with the power state recorded) does when its host reports
    `observed` (`PowerState.NONE`: the host has no such domain): the change and the fields to write, or None
    (no drift, or a status that is not watched)."""
    if status not in WATCHED:
        return None
    if observed == PowerState.NONE:
        reason = gettext_noop("The virtual machine disappeared from its host.")
        return Change.VANISHED, {
            "status": Status.ERROR,
            "power_state": PowerState.NONE,
            "status_reason": reason,
        }
    if observed == PowerState.SHUTOFF and status == Status.RUNNING:
        return Change.STOPPED, {"status": Status.STOPPED, "power_state": observed, "status_reason": None}
    if observed == PowerState.RUNNING and status == Status.STOPPED:
        return Change.STARTED, {"status": Status.RUNNING, "power_state": observed, "status_reason": None}
    if observed != power_state:
        return Change.RECORDED, {"power_state": observed}
    return None


def follow(server: Server, observed: PowerState) -> Change | None:
    """Make an idle, watched server follow the power state observed on its host (`PowerState.NONE`: the
    host has no such domain). `server` is the row as read (its id, status and power state); the write is
    conditional on the server still having no task and still being in that status, so an operation that
    began since (and owns the server's state) wins. Returns what changed, or None when nothing did (no
    drift, a status that is not watched, or the server moved on since it was read)."""
    decision = decide(server.status, server.power_state, observed)
    if decision is None:
        return None
    change, values = decision
    changed = Server.objects.filter(pk=server.pk, task__isnull=True, status=server.status).update(**values)
    return change if changed else None


def reconcile_host(host: Host) -> dict[str, int]:
    """One listing call to the host and one read of its servers, then the conditional updates: one
    statement per kind of change (the same change from the same status), not per server, so the statements
    do not grow with the servers. Returns counts of what changed."""
    counts = {"stopped": 0, "started": 0, "vanished": 0, "unknown": 0}
    try:
        states = driver.domain_states(host)
    except HypervisorError as exc:
        log.warning("reconcile: host %s did not answer: %s", host.name, exc.message)
        return counts
    rows = (
        Server.objects.filter(host=host)
        .exclude(status=Status.DELETED)
        .values_list("id", "status", "power_state", "task")
        .order_by()
    )
    known: set[str] = set()
    # (change, status read, fields to write) -> the servers to make that change
    changes: dict[tuple[Change, str, tuple], list] = {}
    for pk, status, power_state, task in rows:
        key = str(pk)
        known.add(key)
        if task is not None:
            continue
        decision = decide(status, power_state, states.get(key, PowerState.NONE))
        if decision is not None:
            change, values = decision
            changes.setdefault((change, status, tuple(values.items())), []).append(pk)
    for (change, status, values), ids in changes.items():
        changed = Server.objects.filter(pk__in=ids, task__isnull=True, status=status).update(**dict(values))
        if change.value in counts:
            counts[change.value] += changed
    unknown = sorted(set(states) - known - _moving(set(states) - known))
    counts["unknown"] = len(unknown)
    _report_unknown(host, unknown)
    return counts


def _moving(uuids: set[str]) -> set[str]:
    """Of domains the host's servers do not account for, those of servers moving to or from it (a migration
    or an evacuation in flight): not unknown. One statement, only when there are such domains."""
    if not uuids:
        return set()
    moving = Server.objects.filter(pk__in=uuids, task__in=(Task.MIGRATE, Task.EVACUATE)).values_list(
        "id", flat=True
    )
    return {str(pk) for pk in moving}


def _report_unknown(host: Host, unknown: list[str]) -> None:
    """One notice per domain the panel does not know, reported again (refreshed) in one statement; the
    host's notices of domains no longer there are resolved."""
    keys = {f"unknown-domain:{host.pk}:{uuid}" for uuid in unknown}
    if unknown:
        Notice.objects.bulk_create(
            [
                Notice(
                    key=f"unknown-domain:{host.pk}:{uuid}",
                    message=_(
                        "Host %(host)s runs a domain the panel does not know (UUID %(uuid)s); it was left "
                        "untouched."
                    )
                    % {"host": host.name, "uuid": uuid},
                    level=Notice.Level.WARNING,
                    resolved_at=None,
                )
                for uuid in unknown
            ],
            update_conflicts=True,
            unique_fields=["key"],
            update_fields=["message", "level", "resolved_at", "updated_at"],
        )
    Notice.resolve(f"unknown-domain:{host.pk}:", keep=keys)
    if unknown:
        log.warning(
            "reconcile: host %s runs %d domain(s) the panel does not know: %s",
            host.name,
            len(unknown),
            ", ".join(unknown[:10]),
        )
