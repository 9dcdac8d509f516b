"""Moving a server to another host of its region: live while it runs (libvirt's peer-to-peer migration, the
disk copied along), cold otherwise (its disk copied through libvirt streams). Staff only; customers see the
task's "Maintenance: moving your server" and nothing changes in their billing.

Request side (`migrate_server`): the migrate action's compare-and-swap, then, in its transaction, a claim on
the target host (`LockOrder.claim_target`): from here on the server holds capacity on both hosts. The
operation's params keep what the worker and a retry need: the source and target host, whether it moves
live, the bandwidth cap and the live migration's time limit.

Worker side (`migrate`): each step looks first, so that a redelivery after a crash carries on or finishes:
where the domain is (`hypervisor.migration.locate`) decides; the target is prepared (its network filter,
its seed, the image's kernel and an attached ISO copied there), the domain moves, then the switch-over, in
one transaction: the server's host becomes the target (only by this operation: it holds the server's task),
the source's claim is released and the operation closed. What is left on the source goes after the commit
(a failure there is kept for admins in a Notice: the server already runs on the target).

The switch-over's transaction also records a durable to-do, the Notice `migration-leftovers:<server id>`,
resolved after the commit once the source's leftovers are gone (a worker killed in between leaves it open
for admins); the port speed is set on the target then too.

Failure (`migrate_failed`, from `operations.on_failure`; `reap` for the reaper, which leaves alone an
operation whose worker still holds a live lease): a migration job libvirt still runs is aborted first, and
while it runs nothing is put back (the operation stays open and is looked at again). Then whatever the
target got goes, its claim is released and the server stays where it was, running again if it ran; when
the domain turns out to be on the target (the failure came after libvirt's switch-over, or the source does
not answer and the target runs it), the switch-over is recorded instead (`record_switch_over`, the one
function both paths use). When no host that answers can tell where it is, both claims stay and the server
goes to error with a staff detail naming both hosts.
"""

from __future__ import annotations

import logging
import time
import uuid as uuid_module

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from hypervisor import claims, disk_backup, driver
from hypervisor import migration as moves
from hypervisor.connection import HypervisorError
from hypervisor.images import ensure_base_volumes
from hypervisor.models import BaseVolume, Host
from hypervisor.placement import NoCapacity, Resources, candidates
from hypervisor.xml.domain import KernelBoot
from panel.activity import log as activity
from panel.models import ActivityEvent, Notice, Operation, Server, Snapshot, User
from panel.servers import actions, guest, leases, operation_rows
from panel.servers.actions import HOST_DOWN_MESSAGE, OutOfCapacity, Unprocessable
from panel.servers.locks import LockOrder
from panel.servers.operation_records import Progress, announce, fail, finish
from panel.servers.operation_records import finished_or_stop as _finished_or_stop
from panel.servers.operation_records import remember as _remember
from panel.servers.operation_records import step as _step
from panel.servers.operation_states import OPEN
from panel.servers.states import PowerState, Status, Task
from panel.usage import metering

log = logging.getLogger(__name__)

# The admin's limits, checked by the API's serializer and the staff form too.
MAX_BANDWIDTH_MIB = 1_000_000
MIN_TIMEOUT_SECONDS = 10
MAX_TIMEOUT_SECONDS = 86_400

LIVE = "live"
COLD = "cold"

# Stored in the source language (the worker's texts), shown translated (`stored_text`).
FAILED_TEXT = gettext_noop(
    "Moving the server to another host did not succeed; it stays where it was. Our staff have been told."
)
# A failure that came after libvirt's switch-over: the server runs on the other host.
MOVED_TEXT = gettext_noop(
    "The server was moved to another host, but the move did not end cleanly. Our staff have been told."
)
SOURCE_DOWN_TEXT = gettext_noop(
    "The server's host is down: a server cannot be migrated from it. Evacuate the host instead."
)
# The durable to-do the switch-over records, resolved once what is left on the source is removed.
PENDING_LEFTOVERS_TEXT = gettext_noop(
    "Server %(name)s was moved from host %(source)s to %(target)s; what it left on %(source)s (its disk, and "
    "after a cold move its definition) is being removed and its port speed set on %(target)s. If this "
    "notice stays, its worker was lost: remove those on %(source)s and restart the server to set its port "
    "speed."
)
LEFTOVERS_TEXT = gettext_noop(
    "Server %(name)s was moved from host %(source)s to %(target)s, but what it left on %(source)s could not "
    "be removed: %(error)s"
)
TARGET_LEFTOVERS_TEXT = gettext_noop(
    "A failed migration of server %(name)s left something on host %(target)s that could not be removed: "
    "%(error)s"
)
NOWHERE_TEXT = gettext_noop("the server's domain is on neither host")
# A failure after which no host can tell where the domain is: the server keeps both claims, in error.
UNKNOWN_REASON = gettext_noop(
    "A host did not answer while the server was being moved to another host. Our staff have been told."
)
UNKNOWN_DETAIL = (
    "Where the server's domain is could not be told after the failed migration (a host did not answer): it "
    "may be on %(source)s or on %(target)s, and both keep its capacity. Look on both hosts, then record it "
    "by hand. %(error)s"
)
# The admins' audit log (the owner's own log has the action, without hosts).
LIVE_SUMMARY = gettext_noop("Live migration of server %(name)s from host %(source)s to %(target)s started.")
COLD_SUMMARY = gettext_noop("Cold migration of server %(name)s from host %(source)s to %(target)s started.")

# Steps the worker records (no label of their own: the customer's page keeps the task's maintenance text).
PREPARE_STEP = "migrate_prepare"
COPY_STEP = "migrate_copy"
SWITCH_STEP = "migrate_switch"

# How long a failed migration waits for a migration job libvirt still runs (a worker that died left it) to
# end by itself, then for it to end once aborted, and how often it looks; a job still running then leaves
# the operation open, looked at again after UNSETTLED_RETRY_SECONDS (well within the hard time limit,
# which is the soft one plus 60 s).
JOB_WAIT_SECONDS = 10
ABORT_WAIT_SECONDS = 20
JOB_POLL_SECONDS = 2
UNSETTLED_RETRY_SECONDS = 30


# -- Request side


def migrate_server(
    server: Server,
    user: User | None,
    *,
    host: Host | None = None,
    max_bandwidth_mib: int | None = None,
    timeout_seconds: int | None = None,
) -> Operation:
    """Start moving the server to `host` (another ready, enabled host of its region, not in maintenance),
    or to the host placement chooses there (never its own) when none is given: live when it runs, cold
    otherwise. The target's capacity is claimed at once, in the action's transaction.

    Raises Conflict (another action in flight, a status it cannot move from) or Unprocessable (the target
    is not suitable or has no room: OutOfCapacity; the source host is down; bad limits) and changes
    nothing then."""
    bandwidth, timeout = check_limits(max_bandwidth_mib, timeout_seconds)
    if server.host_id is None:
        raise Unprocessable(_("The server is on no host yet."))
    if Host.objects.filter(pk=server.host_id, state=Host.State.DOWN).exists():
        raise Unprocessable(_(SOURCE_DOWN_TEXT))
    if host is not None:
        check_target(server, host)
    params: dict = {"max_bandwidth_mib": bandwidth, "timeout_seconds": timeout}

    def claim(current: Server, locks: LockOrder) -> None:
        # The server's row is locked by the swap: its status and host as they are now.
        # Its size too: what is claimed is what the row holds now (a resize may have committed meanwhile).
        row = (
            Server.objects.filter(pk=current.pk)
            .values("status", "host_id", "name", "vcpus", "memory_mib", "disk_gib")
            .get()
        )
        if host is not None and host.pk == row["host_id"]:
            raise Unprocessable(_("The server is on %(host)s already.") % {"host": host.name})
        if Snapshot.objects.filter(server_id=current.pk).exists():  # libvirt moves no internal snapshots
            raise Unprocessable(
                _(
                    "This server has snapshots, which cannot be moved to another host: delete its "
                    "snapshots first."
                )
            )
        need = Resources(row["vcpus"], row["memory_mib"], row["disk_gib"])
        try:
            target = locks.claim_target(
                current.id, current.region, need, host=host, exclude_host_id=row["host_id"]
            )
        except NoCapacity as exc:
            raise OutOfCapacity(str(exc)) from exc
        source = Host.objects.only("id", "name").get(pk=row["host_id"])
        live = row["status"] == Status.RUNNING
        params.update(
            source_host=source.pk,
            source=source.name,
            target_host=target.pk,
            target=target.name,
            live=live,
        )
        activity.record(
            ActivityEvent.Type.SERVER_ACTION,
            summary=LIVE_SUMMARY if live else COLD_SUMMARY,
            data={"name": row["name"], "source": source.name, "target": target.name, "type": Task.MIGRATE},
            actor=user,
            target=f"server:{current.pk}",
            staff_action=True,
        )

    # Its own audit event (above) names the hosts: the owner's line stays off the audit log.
    return actions.request_action(server, Task.MIGRATE, user, params, prepare=claim, audited=True)


def check_limits(max_bandwidth_mib: int | None, timeout_seconds: int | None) -> tuple[int, int]:
    """The admin's bandwidth cap (MiB/s, 0: none) and time limit (seconds) for a live migration, the
    settings' where none is given; Unprocessable for values out of range."""
    if max_bandwidth_mib is None:
        max_bandwidth_mib = settings.MIGRATION_MAX_BANDWIDTH_MIB
    if timeout_seconds is None:
        timeout_seconds = settings.MIGRATION_TIMEOUT_SECONDS
    if not 0 <= max_bandwidth_mib <= MAX_BANDWIDTH_MIB:
        raise Unprocessable(
            _("The bandwidth cap is between 0 (none) and %(max)s MiB/s.") % {"max": MAX_BANDWIDTH_MIB}
        )
    if not MIN_TIMEOUT_SECONDS <= timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise Unprocessable(
            _("The time limit is between %(min)s and %(max)s seconds.")
            % {"min": MIN_TIMEOUT_SECONDS, "max": MAX_TIMEOUT_SECONDS}
        )
    return max_bandwidth_mib, timeout_seconds


def check_target(server: Server, host: Host) -> None:
    """Why `host` cannot take the server, said plainly (Unprocessable); its room is checked by the claim."""
    if host.pk == server.host_id:
        raise Unprocessable(_("The server is on %(host)s already.") % {"host": host.name})
    if host.region_id != server.region_id:
        raise Unprocessable(
            _("The host %(host)s is in another region than the server.") % {"host": host.name}
        )
    if host.state != Host.State.READY:
        raise Unprocessable(
            _("The host %(host)s is not ready (%(state)s).")
            % {"host": host.name, "state": host.get_state_display().lower()}
        )
    if not host.enabled:
        raise Unprocessable(_("The host %(host)s is disabled.") % {"host": host.name})
    if host.maintenance:
        raise Unprocessable(_("The host %(host)s is in maintenance.") % {"host": host.name})


def targets(server: Server) -> list[Host]:
    """The hosts the server could move to now: the other schedulable hosts of its region with room for it,
    most free memory first (what the staff page offers)."""
    need = Resources(server.vcpus, server.memory_mib, server.disk_gib)
    return [host for host in candidates(server.region, need) if host.pk != server.host_id]


def mode_of(operation: Operation) -> str:
    """ "live" or "cold": how the operation moves (or moved) its server (its params' `live`)."""
    return LIVE if (operation.params or {}).get("live") else COLD


# -- Worker side


def migrate(operation: Operation) -> None:
    """The worker's handler for Task.MIGRATE (see the module's docstring)."""
    server = operation.server
    source, target = _hosts(operation)
    for host in (source, target):
        if host.state == Host.State.DOWN:
            raise HypervisorError(str(HOST_DOWN_MESSAGE))
    operation_rows.read_addresses(server)  # the target's network filter and the seed name them
    # A job libvirt still runs for it (its worker died while libvirt carried on) is followed by live_migrate.
    where = moves.locate(source, target, server.id)
    if where is moves.Where.NOWHERE:
        raise HypervisorError(NOWHERE_TEXT)
    if where is not moves.Where.TARGET:
        _move(operation, server, source, target)
    _step(operation, "migrate:moved")
    announce(operation, SWITCH_STEP)
    state = driver.power_state(target, server.id) or PowerState.NONE
    _switch_over(operation, server, source, target, state)
    after_switch_over(server, source, target, state)


def _hosts(operation: Operation) -> tuple[Host, Host]:
    params = operation.params
    found = Host.objects.in_bulk([params["source_host"], params["target_host"]])
    return found[params["source_host"]], found[params["target_host"]]


def _move(operation: Operation, server: Server, source: Host, target: Host) -> None:
    """Prepare the target and move the domain there (live when it ran when the operation began)."""
    params = operation.params
    if "was_running" not in params:
        running = driver.power_state(source, server.id) == PowerState.RUNNING
        _remember(operation, was_running=running, live=running)
    announce(operation, PREPARE_STEP)
    request = target_request(server, target, owner=str(operation.id))
    moves.prepare_target(source, target, request, _seed(server, source, request))
    _step(operation, "migrate:prepared")
    announce(operation, COPY_STEP)
    # Progress is for show: a write that fails (or finds the lease gone) never fails the migration.
    progress = Progress(operation, best_effort=True)

    def on_progress(figures: moves.Progress) -> None:
        progress(figures.bytes_done, figures.bytes_total, remaining=figures.bytes_remaining)

    if operation.params["was_running"]:
        metering.meter_server(server)  # the source's counters until now (the target's begin at zero)
        moves.live_migrate(
            source,
            target,
            request,
            max_bandwidth_mib=int(params["max_bandwidth_mib"]),
            timeout=float(params["timeout_seconds"]),
            on_progress=on_progress,
        )
    else:
        moves.cold_migrate(source, target, request, on_progress=on_progress)
    progress.flush()


def target_request(server: Server, target: Host, owner: str = "") -> driver.DomainRequest:
    """The server's domain as the target host runs it: the image's kernel and initrd (a kernel-booted
    image) and an attached ISO from the target's own copies (made there on first use)."""
    boot = None
    image = server.image
    if image.kernel_path:
        paths = ensure_base_volumes(target, image, owner=owner)
        boot = KernelBoot(paths["kernel"], paths["initrd"], image.cmdline)
    iso_path = guest.iso_file(target, server.iso, owner=owner) if server.iso_id else ""
    return guest.domain_request(server, boot, iso_path)


def source_request(server: Server, source: Host) -> driver.DomainRequest:
    """The server's domain as the source host runs it (its volumes, filters and base volumes' paths)."""
    boot = None
    image = server.image
    if image.kernel_path:
        paths = dict(BaseVolume.objects.filter(host=source, image=image).values_list("kind", "path"))
        if "kernel" in paths:
            boot = KernelBoot(paths["kernel"], paths["initrd"], image.cmdline)
    return guest.domain_request(server, boot)


def _seed(server: Server, source: Host, request: driver.DomainRequest) -> bytes:
    """The server's cloud-init seed as its source holds it (the guest keeps its instance id, so cloud-init
    does not run again on the target); made anew with the instance id it has when the source cannot give
    it (a simulated host stores no data)."""
    try:
        held = b"".join(disk_backup.read_volume(source, request.seed_volume_name))
    except HypervisorError as exc:
        log.info("seed of %s not read from %s: %s", server.id, source.name, exc.message)
        held = b""
    return held or guest.seed_iso(server, guest.instance_id(server))


def _switch_over(operation: Operation, server: Server, source: Host, target: Host, state: str) -> None:
    """The worker's switch-over (`record_switch_over`, closing the operation as a success); an operation
    closed meanwhile (the reaper) changes nothing and stops the worker (LeaseLost)."""
    record_switch_over(operation, server, source, target, state)


def record_switch_over(
    operation: Operation,
    server: Server,
    source: Host,
    target: Host,
    state: str,
    *,
    failed: tuple[str, str] | None = None,
    only_from=OPEN,
) -> bool:
    """Record that the server's domain is on the target, in one transaction, in the lock order (customer,
    the operation and the server as it closes, the source's host row as its claim goes, the firewall row):
    the server is on the target (its power state `state`), the operation closed (a success, or with
    `failed` = (message, staff detail) a failure that came after libvirt's switch-over), the source's claim
    released, the usage counters start from zero there, the network filter's version raised (the apply is
    sent after the commit, to the new host) and the durable to-do for the source's leftovers recorded (a
    Notice `migration-leftovers:<server id>`, resolved by `after_switch_over` once they are gone). Both the
    worker and the failure paths (the reaper's too) record a switch-over here. Returns whether it closed
    the operation; a success that could not close it (the reaper closed it, its lease passed on) rolls back
    and raises LeaseLost."""
    changes: dict = {"host": target, "power_state": state}
    if server.status in (Status.RUNNING, Status.STOPPED):
        changes["status"] = Status.RUNNING if state == PowerState.RUNNING else Status.STOPPED
    with transaction.atomic():
        locks = LockOrder()
        locks.customer(server.owner_id)
        locks.server()
        if failed is None:
            closed = finish(operation, **changes)
            _finished_or_stop(closed, operation)
        else:
            closed = fail(operation, failed[0], failed[1], only_from=only_from, **changes)
        if closed:
            claims.release_on(server.id, source.pk)
            metering.counters_begin_again(server)
            locks.firewalls([server.id])
            _report(
                leftovers_key(server),
                PENDING_LEFTOVERS_TEXT,
                {"name": server.name, "source": source.name, "target": target.name},
            )
    if closed:
        server.host = target
    return closed


def leftovers_key(server: Server) -> str:
    """The key of the Notice that stays open while what a moved server left on its old host is not removed."""
    return f"migration-leftovers:{server.id}"


def after_switch_over(server: Server, source: Host, target: Host, state: str) -> None:
    """After the switch-over's commit: the port speed (or throttle) on the target (never kept in a domain's
    definition), then what is left on the source goes and the to-do Notice is resolved; a failure there is
    kept in that Notice for admins (the server runs on the target)."""
    if state == PowerState.RUNNING:
        metering.after_start(server)
    key = leftovers_key(server)
    values = {"name": server.name, "source": source.name, "target": target.name}
    if source.state == Host.State.DOWN:
        _report(key, LEFTOVERS_TEXT, {**values, "error": str(HOST_DOWN_MESSAGE)})
        return
    try:
        moves.finish_source(source, source_request(server, source))
    except HypervisorError as exc:
        log.warning("leftovers of %s on %s: %s", server.id, source.name, exc.message)
        _report(key, LEFTOVERS_TEXT, {**values, "error": exc.message})
        return
    Notice.objects.filter(key=key, resolved_at__isnull=True).update(resolved_at=timezone.now())


def _report(key: str, text: str, values: dict) -> None:
    Notice.report(key, _(text) % values)


# -- Failure


class _Unsettled(Exception):
    """libvirt's migration job still runs after it was aborted: nothing may be put back yet."""


def migrate_failed(operation: Operation, message: str) -> dict:
    """`operations.on_failure` for a migration: put things back (see `_give_up`) and fail the operation
    with a plain message (staff get `message`). Returns the server's changes.

    A migration job libvirt still runs (the worker's call failed, the job did not) is waited for a few
    seconds, then aborted and waited for again. When it still runs, nothing is put back and both claims
    stay: the operation stays open, its lease given back, and is looked at again after
    UNSETTLED_RETRY_SECONDS (sent again before its deadline, by the reaper after it)."""
    if not leases.still_held(operation):
        log.warning("not failing migration %s: it was closed or taken over meanwhile", operation.pk)
        return {}
    try:
        changes, _closed = _give_up(operation, message, OPEN, wait=JOB_WAIT_SECONDS)
    except _Unsettled:
        log.warning("migration %s: libvirt's job still runs after an abort; looked at again", operation.pk)
        leases.wait(operation, UNSETTLED_RETRY_SECONDS)
        return {}
    return changes


def reap(operation: Operation, message: str) -> bool:
    """The reaper's part for a migration past its deadline: as a failure (`_give_up`), closed only from the
    status the reaper read. Nothing happens while a worker still holds the operation's live lease (it may
    be preparing the target or copying a disk, with no libvirt job to see): only an operation whose worker
    is gone is reaped. A migration job libvirt still runs is aborted, without waiting: the next round looks
    again. True when it closed the operation."""
    lease = Operation.objects.filter(pk=operation.pk).values("lease_owner", "lease_expires_at").first()
    if lease is None:
        return False
    if lease["lease_owner"] and lease["lease_expires_at"] and lease["lease_expires_at"] > leases.db_now():
        return False
    try:
        _changes, closed = _give_up(operation, message, (operation.status,), wait=0)
    except _Unsettled:
        log.warning("migration %s: libvirt's job still runs; left for the next round", operation.pk)
        return False
    return closed


def _give_up(operation: Operation, message: str, only_from, *, wait: float) -> tuple[dict, bool]:
    """Where the domain is decides, once libvirt's job (if any) has ended (else _Unsettled). On the source
    (or on both, settled: a cold copy on the target): the target's leftovers go, its claim is released, and
    the server, running again on the source if it ran, stays there. On the target (libvirt switched over
    before the failure, or the source does not answer and the target runs it): the switch-over is recorded
    (`record_switch_over`). Unknown (no host that answers can tell): both claims stay and the server goes to
    error with a staff detail saying where it may be; the target's claim is never given back then. An
    operation no worker began touched no host: only the target's claim goes."""
    server = operation.server
    params = operation.params or {}
    if "target_host" not in params:  # refused before it claimed anything: nothing to put back
        return {}, fail(operation, FAILED_TEXT, message, only_from=only_from)
    source, target = _hosts(operation)
    begun = operation.status != Operation.Status.PENDING
    where: moves.Where | None = moves.Where.SOURCE
    if begun:
        _settle(source, target, server.id, wait)
        where = _where(source, target, server.id)
    if where is moves.Where.TARGET:
        state = (_power_state(target, server.id) if _answers(target) else None) or server.power_state
        closed = record_switch_over(
            operation, server, source, target, state, failed=(MOVED_TEXT, message), only_from=only_from
        )
        if closed:
            after_switch_over(server, source, target, state)
        return ({"host": target, "power_state": state} if closed else {}), closed
    if where is None:
        changes = {
            "status": Status.ERROR,
            "status_reason": UNKNOWN_REASON,
            "status_detail": UNKNOWN_DETAIL
            % {"source": source.name, "target": target.name, "error": message},
        }
        with transaction.atomic():
            LockOrder().customer(server.owner_id)  # the lock order: the customer before the server
            closed = fail(operation, FAILED_TEXT, message, only_from=only_from, **changes)
        if closed:
            _report(
                f"migration-unknown:{server.id}",
                TARGET_LEFTOVERS_TEXT,
                {"name": server.name, "target": target.name, "error": changes["status_detail"]},
            )
        return (changes if closed else {}), closed
    changes: dict = {}
    if begun and where is not moves.Where.NOWHERE:
        _rollback_target(server, target)
        if _answers(source):
            _drop_source_copy(server, source)
            changes = _running_again(operation, server, source)
    with transaction.atomic():
        LockOrder().customer(server.owner_id)  # the lock order: the customer before the server
        closed = fail(operation, FAILED_TEXT, message, only_from=only_from, **changes)
        if closed:
            claims.release_on(server.id, target.pk)
    return changes, closed


def _answers(host: Host) -> bool:
    return host.state != Host.State.DOWN


def _settle(source: Host, target: Host, uuid: uuid_module.UUID, wait: float) -> None:
    """Let a migration job libvirt may still run for the domain end: waited for at most `wait` seconds, then
    aborted and waited for at most ABORT_WAIT_SECONDS (none when `wait` is 0). _Unsettled when it still runs.
    A source that does not answer runs no job this process can see (`_where` then asks the target)."""
    if not _answers(source):
        return
    try:
        if not _wait_for_job(source, uuid, wait):
            return
        moves.abort(source, uuid)
        if not _wait_for_job(source, uuid, ABORT_WAIT_SECONDS if wait else 0):
            return
    except HypervisorError as exc:
        log.warning("following the migration job of %s: %s", uuid, exc.message)
        return
    raise _Unsettled(str(uuid))


def _wait_for_job(source: Host, uuid: uuid_module.UUID, wait: float) -> bool:
    """Whether the job still runs after at most `wait` seconds."""
    waited_until = time.monotonic() + wait
    while moves.job_running(source, uuid):
        if time.monotonic() >= waited_until:
            return True
        time.sleep(JOB_POLL_SECONDS)
    return False


def _where(source: Host, target: Host, uuid: uuid_module.UUID) -> moves.Where | None:
    """Where the domain is, from the hosts that answer (a host known to be down is not asked); None when
    that cannot be told, or when the domain is active on both hosts with no job running (staff look)."""
    where = moves.locate_answering(
        source if _answers(source) else None, target if _answers(target) else None, uuid
    )
    if where is moves.Where.BOTH:
        try:
            if moves.on_both(source, target, uuid):
                return None
        except HypervisorError as exc:
            log.warning("locating %s after a failed migration: %s", uuid, exc.message)
            return None
    return where


def _rollback_target(server: Server, target: Host) -> None:
    key = f"migration-target-leftovers:{server.id}:{target.pk}"
    values = {"name": server.name, "target": target.name}
    if not _answers(target):
        _report(key, TARGET_LEFTOVERS_TEXT, {**values, "error": str(HOST_DOWN_MESSAGE)})
        return
    try:
        moves.rollback_target(target, guest.domain_request(server))  # names its volumes and filters
    except HypervisorError as exc:
        log.warning("rolling back %s on %s: %s", server.id, target.name, exc.message)
        _report(key, TARGET_LEFTOVERS_TEXT, {**values, "error": exc.message})


def _drop_source_copy(server: Server, source: Host) -> None:
    """A cold migration's temporary copy of the disk on the source (its worker may have died mid-copy)."""
    try:
        moves.drop_source_copy(source, guest.domain_request(server))
    except HypervisorError as exc:
        log.warning("the migration copy of %s on %s stays: %s", server.id, source.name, exc.message)


def _running_again(operation: Operation, server: Server, source: Host) -> dict:
    """A server that ran when the migration began runs on the source again (a live migration that failed
    leaves it running; this is the safety net): resumed when the migration left it paused, started when it
    is shut off. The server's changes: its power state."""
    state = _power_state(source, server.id)
    if operation.params.get("was_running") and state != PowerState.RUNNING and state != PowerState.NONE:
        try:
            state = moves.run_again(source, server.id)
            metering.after_start(server)
        except HypervisorError as exc:
            log.warning("starting %s again on %s: %s", server.id, source.name, exc.message)
    return {} if state is None else {"power_state": state}


def _power_state(host: Host, uuid: uuid_module.UUID) -> str | None:
    try:
        return driver.power_state(host, uuid) or PowerState.NONE
    except HypervisorError as exc:
        log.warning("power state of %s on %s: %s", uuid, host.name, exc.message)
        return None


def progress_of(operation: Operation) -> dict:
    """{percent, bytes_done, bytes_total, bytes_remaining} as last recorded, or {} before the copy began."""
    progress = operation.progress or {}
    if not progress:
        return {}
    keys = ("percent", "bytes_done", "bytes_total", "bytes_remaining")
    return {key: int(progress.get(key) or 0) for key in keys}
