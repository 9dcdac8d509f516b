"""Evacuation: a server whose host is down for good is rebuilt on another host of its region, from its
latest complete backup when it has one, from its image otherwise. It keeps its id (the libvirt domain
UUID), its addresses and its seed (the same instance id), its plan and its subscription: only the hardware
changes. Its owner is told, by mail in their language and in the activity log, which of the two it was.

The request side (`evacuate_server`) claims the server like any action (`actions.request_action`, which
lets it through although its host is down) and, in the same transaction, room on a target host
(`hypervisor.claims.claim_target`); the operation's params name the source and target hosts, the host the
server was lost on (`lost_host`: a retry's source is its target, so retries carry the first one's), the
status the server had and the backup it is rebuilt from. A server that holds nothing (no room on its host,
no active subscription: a failed create gave them back) is refused.

The worker side (`evacuate`) first moves the server to the target in one transaction: under the operation's
row lock (still open, still this worker's lease: else LeaseLost and nothing changes), the server's host is
switched (conditional on it still being the source) and the source's allocation released, so that a crash
anywhere after leaves a server that its retry (or the next attempt) builds on the target; nothing is ever
done on the source, which does not answer. Then, on the target, as a create does, each step idempotent: the
disk (written from the backup once, or an overlay on the image), the seed (the instance id the guest has:
a rebuilt server's is its rebuild's, `guest.instance_id`), the domain with the server's
network filter, started when the server ran (or was in error); a stopped server stays stopped and a
suspended one suspended (defined, not started). A failure (`evacuate_failed`) leaves the server in error
with a plain reason, holding what it holds: staff evacuate it again, which rebuilds it where it now is.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.template.loader import render_to_string
from django.utils import formats, timezone, translation
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from billing import subscriptions
from billing.texts import language_of
from hypervisor import claims, driver
from hypervisor.connection import HypervisorError
from hypervisor.models import Allocation, Host
from hypervisor.placement import NoCapacity, Resources
from panel import mail
from panel.activity import log as activity
from panel.backups import runs
from panel.models import ActivityEvent, Backup, Operation, Server, Snapshot, User
from panel.servers import firewall, guest, leases, operation_rows, operation_states, operation_steps
from panel.servers.actions import HOST_DOWN_MESSAGE, Conflict, OutOfCapacity, Unprocessable, request_action
from panel.servers.locks import LockOrder
from panel.servers.operation_records import (
    announce,
    finish,
    finished_or_stop,
    host_of,
    remember,
    remember_defining,
    step,
)
from panel.servers.states import PowerState, Status, Task
from panel.usage import metering

log = logging.getLogger(__name__)

# The host states in which a server may be evacuated: the health check's verdict that it stopped answering.
# (A host in error may still run its guests: rebuilding them elsewhere would run two with one address.)
EVACUABLE_HOST_STATES = (Host.State.DOWN,)
# How many of a server's newest backups are looked at for one that can be restored elsewhere.
BACKUP_CANDIDATES = 5

# What the customer is told when an evacuation failed (stored in the source language, shown translated).
EVACUATE_FAILED_TEXT = gettext_noop(
    "The hardware this server ran on failed, and moving it to new hardware did not succeed yet. Our staff "
    "have been notified and will try again."
)
# The owner's activity log: which way the server was made again.
RESTORED_FROM_BACKUP = gettext_noop(
    "Server %(name)s was moved to new hardware after its host failed and restored from its backup of "
    "%(date)s: changes made since then were lost."
)
REINSTALLED_FROM_IMAGE = gettext_noop(
    "Server %(name)s was moved to new hardware after its host failed and reinstalled from its image "
    "%(image)s: it had no backup, so the data on its disk were lost."
)
# Why a server that holds nothing is not evacuated (a failed create gave back its room, addresses and
# subscription; a delete was reaped): rebuilding it would start a server nobody pays for, without an address.
HOLDS_NOTHING = gettext_noop(
    "This server holds no room on its host or has no active subscription (its creation failed, or it was "
    "being deleted), so it is not rebuilt on another host."
)


def _evacuable(server: Server) -> bool:
    """The server's host is down (an evacuation), or the server sits on the target of an evacuation that
    failed (evacuating it again rebuilds it where it is)."""
    if Host.objects.filter(pk=server.host_id, state__in=EVACUABLE_HOST_STATES).exists():
        return True
    return failed_evacuation(server) is not None


def failed_evacuation(server: Server) -> Operation | None:
    """The server's last operation when it is an evacuation that failed after it moved the server to its
    target (which answers): evacuating it again rebuilds it there."""
    latest = Operation.objects.filter(server=server).order_by("-created_at").first()
    if latest is None or latest.type != Task.EVACUATE or latest.status != Operation.Status.FAILED:
        return None
    if latest.params.get("target_host") != server.host_id:
        return None
    if Host.objects.filter(pk=server.host_id, state__in=EVACUABLE_HOST_STATES).exists():
        return None
    return latest


def latest_restorable_backup(server: Server, lost_host_id: int | None) -> Backup | None:
    """The server's newest complete backup whose whole chain can be read without the lost host (a target
    that is a storage pool on it is gone with it); None when it has none."""
    candidates = (
        Backup.objects.usable()
        .filter(server=server)
        .select_related("target", "target__host")
        .order_by("-completed_at", "-pk")[:BACKUP_CANDIDATES]
    )
    for backup in candidates:
        try:
            chain = runs.chain_of(backup)
        except HypervisorError:
            continue
        if all(member.target.host_id is None or member.target.host_id != lost_host_id for member in chain):
            return backup
    return None


def holds_its_place(server: Server) -> bool:
    """The server holds room on its host and has a live subscription: what an evacuated server keeps."""
    if not Allocation.objects.filter(consumer_uuid=server.id, host_id=server.host_id).exists():
        return False
    return subscriptions.active_subscription(str(server.id)) is not None


def lost_host_of(operation: Operation) -> int | None:
    """The host an evacuation (or the first of its retries) lost the server on."""
    return operation.params.get("lost_host", operation.params.get("source_host"))


def evacuate_server(server: Server, user: User | None, *, host: Host | None = None) -> Operation:
    """Rebuild the server on another host of its region (`host`: that one), from its latest backup or its
    image. Raises Conflict (busy, a status it cannot be evacuated from, or its host is not down),
    Unprocessable (it holds no room on its host or has no active subscription: HOLDS_NOTHING) or
    OutOfCapacity (no host of the region has room); nothing changes then."""
    params: dict = {}

    def claim(current: Server, locks: LockOrder) -> None:
        current = Server.objects.select_related("host").get(pk=current.pk)
        if not _evacuable(current):
            raise Conflict(
                _("Only a server whose host is down can be evacuated; migrate it instead (its host answers).")
            )
        if not holds_its_place(current):
            raise Unprocessable(_(HOLDS_NOTHING))
        lost_host_id = current.host_id
        params.update(source_host=current.host_id, was=current.status)
        failed = failed_evacuation(current)
        if failed is not None:
            # A failed evacuation left it on its target, holding room there: it is rebuilt where it is, and
            # comes back as it was before its host was lost (the host every retry names as lost is the
            # first evacuation's: from the second retry on, the failed one's source is the target).
            lost_host_id = lost_host_of(failed)
            params.update(
                target_host=current.host_id, retry=True, was=failed.params.get("was", current.status)
            )
        else:
            need = Resources(current.vcpus, current.memory_mib, current.disk_gib)
            try:
                target = locks.claim_target(
                    current.id, current.region, need, host=host, exclude_host_id=current.host_id
                )
            except NoCapacity as exc:
                raise OutOfCapacity(
                    _("The server cannot be evacuated now: %(reason)s") % {"reason": str(exc)}
                ) from exc
            params["target_host"] = target.pk
        params["lost_host"] = lost_host_id
        backup = latest_restorable_backup(current, lost_host_id)
        if backup is not None:
            params.update(backup=backup.pk, backup_at=(backup.completed_at or backup.created_at).isoformat())

    return request_action(server, Task.EVACUATE, user, params, prepare=claim, host_down_ok=True)


# -- The worker's side


def _switch(operation: Operation, server: Server, target: Host) -> None:
    """Move the server to the target host in one transaction (the lock order: customer, the operation and
    the server, host): the operation locked, still open under this worker's lease; the server's host
    switched, conditional on it being the source still; only then the source's allocation released. Done
    once: a retry finds the server on the target already. Raises LeaseLost, changing nothing, when the
    operation was closed meanwhile (the reaper, which gave the target's room back) or its lease passed on,
    or the server is not the source's any more."""
    leases.check(operation)
    source = operation.params["source_host"]
    with transaction.atomic():
        locks = LockOrder()
        locks.customer(server.owner_id)
        locks.server()
        held = (
            Operation.objects.select_for_update(no_key=True)
            .filter(pk=operation.pk, status__in=operation_states.OPEN, lease_owner=operation.lease_owner)
            .values_list("pk", flat=True)
        )
        if not list(held):
            raise leases.LeaseLost(f"operation {operation.pk} was closed or taken over before its switch")
        moved = Server.objects.filter(pk=server.pk, task=Task.EVACUATE, host_id=source).update(
            host=target, updated_at=timezone.now()
        )
        if moved != 1:
            raise leases.LeaseLost(f"server {server.pk} of operation {operation.pk} left {source} otherwise")
        claims.release_on(server.id, source)
        metering.counters_begin_again(server)
    server.host_id, server.host = target.pk, target


def evacuate(operation: Operation) -> None:
    """Rebuild the server on the operation's target host (see the module's description)."""
    server = operation.server
    params = operation.params
    target = Host.objects.get(pk=params["target_host"])
    if server.host_id != target.pk:
        if target.state == Host.State.DOWN:  # before the switch: the failure gives the target's room back
            raise HypervisorError(str(HOST_DOWN_MESSAGE))
        _switch(operation, server, target)
    host = host_of(server)
    operation_rows.read_addresses(server)  # the addresses it keeps: the domain's filter and the seed
    announce(operation, operation_steps.PREPARE_DISK)
    base_path, boot = guest.image_files(server, owner=str(operation.id))
    iso_path = guest.iso_file(host, server.iso, owner=str(operation.id))  # an attached ISO stays attached
    request = guest.domain_request(server, boot, iso_path)
    if params.get("retry") and not params.get("cleared"):
        driver.destroy(host, request)  # what the failed evacuation left on this host goes first
        remember(operation, cleared=True)
    if params.get("backup"):
        disk_path = runs.disk_for_new_server(operation, host, request)
    else:
        disk_path = driver.create_disk(host, request, base_path)
    step(operation, "evacuate:disk")
    # Until the domain is defined the seed is (re)written (the same instance id: the guest keeps its
    # identity); no domain exists before an attempt recorded that it was defining it.
    first_define = not operation.params.get("defining")
    defined = not first_define and driver.power_state(host, server.id) is not None
    seed = guest.seed_iso(server, guest.instance_id(server))  # a rebuilt server's id is its rebuild's
    seed_path = driver.write_seed(host, request, seed, replace=not defined)
    remember_defining(operation)
    driver.define_domain(host, request, disk_path, seed_path, replace=first_define)
    # The filter as the firewall says now (the definition defined only what the host lacked).
    driver.apply_network_filter(host, firewall.filter_spec(server))
    step(operation, "evacuate:defined")
    changes = _final_state(operation, server, host)
    with transaction.atomic():
        Snapshot.objects.filter(server=server).delete()  # they lived in the lost disk
        closed = finish(operation, disk_grows_with_snapshots=True, **changes)
        finished_or_stop(closed, operation)
        _tell_owner(operation, server)


def _final_state(operation: Operation, server: Server, host: Host) -> dict:
    """Start the server when it ran (or was in error: a rebuild is what it waited for); a stopped server
    stays stopped and a suspended one suspended (its suspension's reason stays)."""
    was = operation.params.get("was")
    if was in (Status.RUNNING, Status.ERROR):
        announce(operation, operation_steps.BOOT)
        state = driver.start(host, server.id)
        metering.after_start(server, new=True)  # a new domain: its metering starts afresh
        return {"status": Status.RUNNING, "power_state": state, "status_reason": None}
    state = driver.power_state(host, server.id) or PowerState.SHUTOFF
    if was == Status.SUSPENDED:
        return {"status": Status.SUSPENDED, "power_state": state}
    return {"status": Status.STOPPED, "power_state": state, "status_reason": None}


def _when(text: str | None) -> datetime | None:
    moment = parse_datetime(text) if text else None
    return timezone.localtime(moment) if moment is not None else None


def _tell_owner(operation: Operation, server: Server) -> None:
    """In the closing transaction: the owner's activity log says how the server was made again, and a mail
    in the owner's language (sent after the commit) says the same."""
    owner = User.objects.get(pk=server.owner_id)
    backup_at = _when(operation.params.get("backup_at")) if operation.params.get("backup") else None
    data = {"name": server.name, "image": server.image.name}
    if backup_at is not None:
        data["date"] = backup_at.strftime("%Y-%m-%d %H:%M")
    activity.record(
        ActivityEvent.Type.SERVER_ACTION,
        summary=RESTORED_FROM_BACKUP if backup_at is not None else REINSTALLED_FROM_IMAGE,
        data=data,
        account=owner,
        target=f"server:{server.id}",
    )
    language = language_of(owner)
    with translation.override(language):
        context = {
            "owner": owner,
            "server": server,
            "image": server.image.name,
            "backup_at": formats.date_format(backup_at, "DATETIME_FORMAT") if backup_at else "",
            "was_running": operation.params.get("was") in (Status.RUNNING, Status.ERROR),
            "suspended": operation.params.get("was") == Status.SUSPENDED,
        }
        subject = render_to_string("panel/mail/server_evacuated_subject.txt", context).strip()
        body = render_to_string("panel/mail/server_evacuated.txt", context)
    email = owner.email
    transaction.on_commit(lambda: mail.send_in_language(language, subject, body, [email], fail_silently=True))


def evacuate_failed(operation: Operation, message: str) -> dict:
    """The server's changes when an evacuation failed: error, with a plain reason for the customer and the
    error for staff. What it holds stays (its addresses, its subscription, its room on the target)."""
    return {"status": Status.ERROR, "status_reason": EVACUATE_FAILED_TEXT, "status_detail": message}


def release_unused_target(operation: Operation) -> None:
    """In the transaction that failed the evacuation (after the customer's lock): when it failed before the
    server moved to its target, the room claimed there goes back (evacuating it again claims anew)."""
    source, target = operation.params.get("source_host"), operation.params.get("target_host")
    if target is None or target == source:
        return
    if Server.objects.filter(pk=operation.server_id, host_id=source).exists():
        claims.release_on(operation.server_id, target)
