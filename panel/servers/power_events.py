"""Lifecycle events of libvirt domains applied to servers (the panel's side of `hypervisor.events`).

`apply_event` makes the same decision reconcile makes (`reconcile.follow`) for the one server whose domain
sent the event: only an idle running or stopped server on that host follows its domain, and the write is
conditional on it still being idle in the status read. A server with a task in flight is left to its
operation (a delete or rebuild undefines its domain legitimately). The state applied is the one the host
reports when the event is applied, not the one the event carried, so a late event never undoes what an
operation did since.

`catch_up` reconciles a host once the listener (re)connected to it, for what happened while it was not
listened to. Both run in the listener's applier thread (`manage.py listen_events`).
"""

from __future__ import annotations

import logging

from hypervisor.events import LifecycleEvent
from hypervisor.models import Host
from panel.models import Server
from panel.servers import reconcile
from panel.servers.reconcile import Change

log = logging.getLogger(__name__)


def apply_event(event: LifecycleEvent) -> Change | None:
    """Make the server whose domain sent the event follow the domain's power state. Returns what changed,
    or None (an unknown domain, a server with a task or in a status that is not watched, no drift)."""
    server = (
        Server.objects.filter(pk=event.server_id, host_id=event.host_id)
        .only(*reconcile.FOLLOWED_FIELDS, "name", "task")
        .first()
    )
    if server is None:
        log.debug(
            "events: domain %s on host %s is not a server of this host", event.server_id, event.host_name
        )
        return None
    if server.task is not None:
        log.info("events: server %s (%s) left to its %s operation", server.name, server.pk, server.task)
        return None
    if server.status not in reconcile.WATCHED:
        log.debug("events: server %s (%s) is %s: not watched", server.name, server.pk, server.status)
        return None
    observed = event.current_power_state()
    if observed is None:
        return None  # the host cannot tell now; the catch-up after reconnecting will
    change = reconcile.follow(server, observed)
    if change is not None:
        log.info(
            "events: server %s (%s) %s: power state %s",
            server.name,
            server.pk,
            change,
            observed.value or "none",
        )
    return change


def catch_up(host_id: int) -> dict[str, int] | None:
    """Reconcile a host the listener has just (re)connected to; None when it is no longer ready."""
    host = Host.objects.filter(pk=host_id, state=Host.State.READY).first()
    if host is None:
        return None
    counts = reconcile.reconcile_host(host)
    log.info("events: host %s caught up: %s", host.name, ", ".join(f"{k} {v}" for k, v in counts.items()))
    return counts
