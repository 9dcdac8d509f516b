"""Reconcile what Postgres believes with what each hypervisor reports (the hypervisor is the authority
for power state). Servers with a task in flight are skipped; every write is conditional on the server
still being idle in the status that was read.
"""

from __future__ import annotations

import logging

from django.utils.translation import gettext as _

from hypervisor import driver
from hypervisor.connection import HypervisorError
from hypervisor.models import Host
from panel.models import Notice, Server
from panel.servers.states import PowerState, Status

log = logging.getLogger(__name__)
WATCHED = (Status.RUNNING, Status.STOPPED)


def reconcile_host(host: Host) -> dict[str, int]:
    """One listing call to the host, then conditional updates. Returns counts of what changed."""
    counts = {"stopped": 0, "started": 0, "vanished": 0, "unknown": 0}
    try:
        states = driver.domain_states(host)
    except HypervisorError as exc:
        log.warning("reconcile: host %s did not answer: %s", host.name, exc.message)
        return counts
    servers = Server.objects.filter(host=host, task__isnull=True, status__in=WATCHED).only(
        "id", "status", "power_state"
    )
    known = set()
    for server in servers:
        key = str(server.id)
        known.add(key)
        state = states.get(key)
        idle = Server.objects.filter(pk=server.pk, task__isnull=True, status=server.status)
        if state is None:
            counts["vanished"] += idle.update(
                status=Status.ERROR,
                power_state=PowerState.NONE,
                status_reason=_("The virtual machine disappeared from its host."),
            )
        elif state == PowerState.SHUTOFF and server.status == Status.RUNNING:
            counts["stopped"] += idle.update(status=Status.STOPPED, power_state=state, status_reason=None)
        elif state == PowerState.RUNNING and server.status == Status.STOPPED:
            counts["started"] += idle.update(status=Status.RUNNING, power_state=state, status_reason=None)
        elif state != server.power_state:
            idle.update(power_state=state)
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
