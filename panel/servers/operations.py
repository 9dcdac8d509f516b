"""Carrying out operations in a worker. Each handler's steps are idempotent (they look at the hypervisor
before acting), so a redelivered or retried task finishes the work instead of repeating it. Every exit
clears the server's task: success, failure, or the reaper after a deadline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop

from billing import subscriptions
from billing.models import Plan
from hypervisor import claims, disk_backup, driver, ipam
from hypervisor.connection import HypervisorError
from hypervisor.models import BaseVolume, Host, Image
from hypervisor.placement import Resources
from hypervisor.xml.domain import KernelBoot
from hypervisor.xml.storage import GIB
from panel.backups import pricing as backup_pricing
from panel.backups import pruning, runs
from panel.models import Operation, Server, Snapshot
from panel.servers import (
    evacuation,
    guest,
    leases,
    migration,
    operation_rows,
    operation_states,
    operation_steps,
    passwords,
    reverse_dns,
)
from panel.servers.actions import HOST_DOWN_MESSAGE
from panel.servers.locks import LockOrder
from panel.servers.operation_records import announce, fail, finish
from panel.servers.operation_records import finished_or_stop as _finished_or_stop
from panel.servers.operation_records import host_of as _host
from panel.servers.operation_records import remember as _remember
from panel.servers.operation_records import remember_defining as _remember_defining
from panel.servers.operation_records import step as _step
from panel.servers.operation_records import was_running as _was_running
from panel.servers.states import PowerState, Status, SuspendedBy, Task
from panel.usage import metering

log = logging.getLogger(__name__)
OPEN = operation_states.OPEN
# What customers are told when an operation fails: plain words. The error itself (the hypervisor's, which
# may name internal hosts and paths) is kept for staff in Operation.detail and Server.status_detail.
FAILED_STATUS_REASONS = {
    Task.CREATE: gettext_lazy(
        "Creating the server failed. Delete it and nothing is charged for it, or rebuild it to try again."
    ),
    Task.DELETE: gettext_lazy("Deleting the server failed. Please try again; our staff have been notified."),
    Task.REBUILD: gettext_lazy(
        "Rebuilding the server failed. Please try again; our staff have been notified."
    ),
}
# What staff are told, after the error, when a failed create may have left its domain on the host.
CLEANUP_PENDING = gettext_lazy(
    "Cleanup is pending: the domain may still exist on the host, so the server keeps its capacity, its "
    "address and its subscription until it is deleted (deleting it destroys the domain)."
)
FAILED_MESSAGE = gettext_lazy("The action failed. Please try again, or contact support if it keeps failing.")
# A rescue that failed (or stuck) after it began changing the domain, and could not put it back: the server
# is left in rescue mode, which the customer leaves to boot it normally.
RESCUE_LEFT_OVER = gettext_lazy(
    "Rescue mode could not be started cleanly, so the server may still boot the rescue system. Leave rescue "
    "mode to boot it from its own disk."
)
# A password reset the guest agent did not carry out (the failure banner offers rescue mode for it).
GUEST_AGENT_TEXT = gettext_noop(
    "The root password could not be reset: the QEMU guest agent in the server did not answer (it may not be "
    "installed or running). Use rescue mode to set a new password, or install qemu-guest-agent in the server "
    "and try again."
)


def _public_message(message: str) -> str:
    """What the customer is told about a failed action: a host that is down is said as such (it names
    nothing internal and tells them to wait); any other hypervisor error becomes the plain message."""
    return message if message == str(HOST_DOWN_MESSAGE) else str(FAILED_MESSAGE)


@dataclass
class RetryLater(Exception):
    """The task should run again after `countdown` seconds: a transient hypervisor error (the attempt
    counted), or a heavy operation waiting for its turn on its host (no attempt counted)."""

    countdown: int
    reason: str


def domain_request(server: Server) -> driver.DomainRequest:
    """The request for an existing server's domain (kernel boot as its image says, no copying)."""
    boot = None
    image = server.image
    if image.kernel_path:
        base = BaseVolume.objects.filter(host=server.host_id, image=image).values_list("kind", "path")
        paths = dict(base)
        if "kernel" in paths:
            boot = KernelBoot(paths["kernel"], paths["initrd"], image.cmdline)
    return guest.domain_request(server, boot, _iso_path(server))


def _iso_path(server: Server) -> str:
    """Where the server's attached ISO lies on its host (copied there when it was attached), so that a
    redefinition keeps its CD-ROM drive; "" when none is attached (or its copy is not on this host)."""
    if server.iso_id is None or server.host_id is None:
        return ""
    copies = BaseVolume.objects.filter(
        host=server.host_id, image=server.iso_id, kind="iso", state=BaseVolume.State.READY
    )
    return copies.order_by("-pk").values_list("path", flat=True).first() or ""  # the newest file of the ISO


# Operations that copy disks and images: at most HOST_HEAVY_OPERATIONS of them run at once on one host.
HEAVY = (
    Task.CREATE, Task.REBUILD, Task.RESIZE, Task.RESCUE, Task.ATTACH_ISO, Task.BACKUP, Task.RESTORE_BACKUP,
    Task.MIGRATE,  # the source host's turn: a whole disk (and a running guest's memory) is copied off it
)  # fmt: skip
HOST_TURN_LOCK = 7301  # the first key of the advisory lock that orders heavy operations per host
HOST_TURN_POLL = 2  # seconds between looks at whether a waiting heavy operation's turn has come


def begin(operation_id: str) -> Operation | None:
    """Take the operation's lease and mark it running (counting the attempt). None when it has finished,
    another worker holds its lease, or another chain of retries already waits for its turn. Raises
    RetryLater when it is a heavy operation whose host is busy with as many heavy operations as it may
    run: it waits its turn, in order of arrival, without a worker."""
    claimed = None  # the claim on the lease (leases.claim), given up unless the operation starts here
    started = False
    try:
        with transaction.atomic():
            # The row locked with its server, host, plan and image, and the database's clock: one statement,
            # which also takes the host's turn lock for a heavy operation (see _start).
            locked = operation_rows.lock(operation_id, turn=(HOST_TURN_LOCK, HEAVY))
            if locked is None:
                return None
            operation, now = locked
            if operation.is_finished or not leases.claim(operation, now):
                return None
            claimed = operation.pk
            lease_owner, lease_expires_at = leases.lease(now)
            running = {
                "status": Operation.Status.RUNNING,
                "attempts": operation.attempts + 1,
                "started_at": operation.started_at or now,
                "lease_owner": lease_owner,
                "lease_expires_at": lease_expires_at,
            }
            busy = not _start(operation, now, running)
            if busy:
                waiting_for_turn = timedelta(seconds=settings.OPERATION_DISPATCH_SECONDS)
                polled = operation.lease_expires_at is not None and not operation.lease_owner
                if polled and operation.lease_expires_at > now + waiting_for_turn:
                    return None  # another chain of retries polled within HOST_TURN_POLL: one chain is enough
                operation.lease_owner = ""
                operation.lease_expires_at = now + timedelta(seconds=HOST_TURN_POLL) + waiting_for_turn
                operation_rows.update_operation(
                    operation.pk, {"lease_owner": "", "lease_expires_at": operation.lease_expires_at}
                )
            else:
                for name, value in running.items():
                    setattr(operation, name, value)
        if busy:
            raise RetryLater(countdown=HOST_TURN_POLL, reason="waiting for its turn on the host")
        started = True
        return operation
    finally:
        if claimed is not None and not started:
            leases.unclaim(claimed)


def _start(operation: Operation, now: datetime, running: dict) -> bool:
    """Save `running` (the operation's status, attempt and lease as it starts; a create's server goes to
    provisioning with it), in one statement on Postgres; False, saving nothing, when it is a heavy operation
    whose turn on its host has not come: HOST_HEAVY_OPERATIONS heavy operations are ahead of it (running
    under a live lease, or open and older). Heavy operations are serialised per host by an advisory lock
    (HOST_TURN_LOCK, the host's id) held to the end of the caller's transaction, so two workers never both
    take the last place: the statement that locked the operation took it (operation_rows.lock), and the
    count, a statement after it, sees what the turn's earlier holders committed. SQLite (the demo) runs one
    write transaction at a time anyway."""
    server_changes, server_where = (
        ({"status": Status.PROVISIONING}, {"status": Status.PENDING})
        if operation.type == Task.CREATE
        else (None, None)
    )
    host_id = operation.server.host_id
    if operation.type in HEAVY and host_id:
        return operation_rows.start_in_turn(
            operation,
            host_id,
            HEAVY,
            OPEN,
            now,
            limit=settings.HOST_HEAVY_OPERATIONS,
            changes=running,
            server_changes=server_changes,
            server_where=server_where,
        )
    if server_changes is None:
        operation_rows.update_operation(operation.pk, running)
    else:
        operation_rows.update_operation_and_server(
            operation.pk,
            running,
            {},
            operation.server_id,
            server_changes,
            server_where,
            only_if_changed=False,
        )
    return True


def create(operation: Operation) -> None:
    server = operation.server
    host = _host(server)
    operation_rows.read_addresses(server)  # in one statement, for the domain's filter and the seed
    base_path, boot = guest.image_files(server, owner=str(operation.id))
    request = guest.domain_request(server, boot)
    if operation.params.get("backup"):  # a server made from a backup: its disk is the backup's
        disk_path = runs.disk_for_new_server(operation, host, request)
    else:
        disk_path = driver.create_disk(host, request, base_path)
    _step(operation, "create:disk")
    # Until the domain is defined the seed is (re)written: an earlier attempt may have died mid-upload. No
    # domain can exist before an attempt recorded that it was defining it (no need to ask the host then).
    first_define = not operation.params.get("defining")
    defined = not first_define and driver.power_state(host, server.id) is not None
    seed_path = driver.write_seed(host, request, guest.seed_iso(server), replace=not defined)
    _step(operation, "create:seeded")
    _remember_defining(operation)
    driver.define_domain(host, request, disk_path, seed_path, replace=first_define)
    _step(operation, "create:defined")
    state = driver.start(host, server.id)
    metering.after_start(server, new=True)
    finish(operation, status=Status.RUNNING, power_state=state, status_reason=None)


def start(operation: Operation) -> None:
    state = driver.start(_host(operation.server), operation.server.id)
    metering.after_start(operation.server)
    finish(operation, status=Status.RUNNING, power_state=state, status_reason=None)


def power_off(operation: Operation) -> None:
    host = _host(operation.server)
    metering.meter_server(operation.server)
    state = driver.power_off(host, operation.server.id)
    finish(operation, status=Status.STOPPED, power_state=state, status_reason=None)


def shutdown(operation: Operation) -> None:
    host = _host(operation.server)
    metering.meter_server(operation.server)
    announce(operation, operation_steps.GUEST_SHUTDOWN)
    graceful = driver.shutdown(host, operation.server.id, settings.SHUTDOWN_TIMEOUT)
    reason = None if graceful else _("The guest did not shut down in time and was powered off.")
    finish(operation, status=Status.STOPPED, power_state=PowerState.SHUTOFF, status_reason=reason)


def reboot(operation: Operation) -> None:
    announce(operation, operation_steps.GUEST_REBOOT)
    graceful = driver.reboot(_host(operation.server), operation.server.id, settings.REBOOT_TIMEOUT)
    reason = None if graceful else _("The guest did not reboot in time and was reset.")
    finish(operation, status=Status.RUNNING, power_state=PowerState.RUNNING, status_reason=reason)


def resize(operation: Operation) -> None:
    """New vCPU and memory sizes apply with a restart (graceful shutdown first); the disk grows live."""
    server = operation.server
    host = _host(server)
    plan = Plan.objects.get(slug=operation.params["plan"])
    was_running = _was_running(operation)
    request = replace(
        domain_request(server), vcpus=plan.vcpus, memory_mib=plan.memory_mib, disk_gib=plan.disk_gib
    )
    if plan.disk_gib > server.disk_gib:
        announce(operation, operation_steps.GROW_DISK)
    driver.resize_disk(host, request)
    _step(operation, "resize:disk")
    announce(operation, operation_steps.CONFIGURE)
    driver.set_resources(host, server.id, plan.vcpus, plan.memory_mib)
    _step(operation, "resize:configured")
    if was_running and driver.current_resources(host, server.id) != (plan.vcpus, plan.memory_mib):
        metering.meter_server(server)
        announce(operation, operation_steps.GUEST_SHUTDOWN)
        driver.shutdown(host, server.id, settings.SHUTDOWN_TIMEOUT)
        _step(operation, "resize:stopped")
    if was_running:
        announce(operation, operation_steps.BOOT)
    state = driver.start(host, server.id) if was_running else PowerState.SHUTOFF
    server.plan = plan
    if was_running:
        metering.apply_port_speed(server, metering.desired_speed(server))
    with transaction.atomic():
        locks = LockOrder()
        locks.customer(server.owner_id)
        locks.server()
        closed = finish(
            operation,
            plan=plan,
            vcpus=plan.vcpus,
            memory_mib=plan.memory_mib,
            disk_gib=plan.disk_gib,
            status=Status.RUNNING if was_running else Status.STOPPED,
            power_state=state,
            status_reason=None,
        )
        _finished_or_stop(closed, operation)
        # Backups cost a share of the plan's price: once the resize has succeeded, they follow it.
        backup_pricing.reprice(server, plan, locks)


def rebuild(operation: Operation) -> None:
    """A fresh disk from the image and a new seed (a new instance id, so cloud-init runs again)."""
    server = operation.server
    host = _host(server)
    image = Image.objects.get(slug=operation.params["image"])
    server.image = image
    if driver.power_state(host, server.id) is not None:  # a vanished domain is simply defined anew
        announce(operation, operation_steps.POWER_OFF)
        driver.power_off(host, server.id)
        driver.drop_snapshots(host, server.id)
        disk_backup.drop_checkpoints(host, server.id, metadata_only=True)  # the next backup is a full one
    _step(operation, "rebuild:stopped")
    announce(operation, operation_steps.PREPARE_DISK)
    base_path, boot = guest.image_files(server, owner=str(operation.id))
    iso_path = guest.iso_file(host, server.iso, owner=str(operation.id))  # an attached ISO stays attached
    request = guest.domain_request(server, boot, iso_path)
    driver.delete_disk(host, request)
    _step(operation, "rebuild:disk-deleted")
    disk_path = driver.create_disk(host, request, base_path)
    seed_path = driver.write_seed(
        host, request, guest.seed_iso(server, guest.rebuild_instance_id(server, operation.id)), replace=True
    )
    _remember_defining(operation)
    driver.define_domain(host, request, disk_path, seed_path, replace=True)
    _step(operation, "rebuild:defined")
    announce(operation, operation_steps.BOOT)
    state = driver.start(host, server.id)
    metering.after_start(server)
    with transaction.atomic():
        Snapshot.objects.filter(server=server).delete()  # the rebuild dropped the old disk's snapshots
        closed = finish(
            operation,
            image=image,
            status=Status.RUNNING,
            power_state=state,
            status_reason=None,
            disk_grows_with_snapshots=True,  # the new disk is qcow2 version 3
        )
        _finished_or_stop(closed, operation)


def _drop_checkpoints(operation: Operation) -> None:
    """Backup checkpoints (their dirty bitmaps in the disk) cannot coexist with reverting an internal
    snapshot, nor with taking one of a stopped server (QEMU refuses): they go first, and the server's next
    backup is a full one."""
    server = operation.server
    if disk_backup.checkpoints(_host(server), server.id):
        disk_backup.drop_checkpoints(_host(server), server.id)


def snapshot_name(operation: Operation) -> str:
    return f"snap-{operation.id.hex[:12]}"


def snapshot(operation: Operation) -> None:
    server = operation.server
    name = snapshot_name(operation)
    _drop_checkpoints(operation)
    driver.create_snapshot(_host(server), server.id, name, operation.params["name"])
    _step(operation, "snapshot:taken")
    with transaction.atomic():
        Snapshot.objects.get_or_create(
            server=server, libvirt_name=name, defaults={"name": operation.params["name"]}
        )
        _finished_or_stop(finish(operation), operation)


def restore(operation: Operation) -> None:
    server = operation.server
    snap = Snapshot.objects.get(pk=operation.params["snapshot"], server=server)
    if not operation.params.get("reverted"):  # a retry after the revert does not revert (restart) again
        _drop_checkpoints(operation)
        driver.revert_to_snapshot(_host(server), server.id, snap.libvirt_name)
        _remember(operation, reverted=True)
    # Reverting brings back the definition the snapshot saved: the CD-ROM drive follows Server.iso again.
    driver.set_iso(_host(server), server.id, _iso_path(server))
    state = driver.power_state(_host(server), server.id)
    if state == PowerState.RUNNING:
        metering.after_start(server)
    finish(
        operation,
        status=Status.RUNNING if state == PowerState.RUNNING else Status.STOPPED,
        power_state=state,
        status_reason=None,
    )


def delete_snapshot(operation: Operation) -> None:
    server = operation.server
    snap = Snapshot.objects.filter(pk=operation.params["snapshot"], server=server).first()
    if snap is not None:
        driver.delete_snapshot(_host(server), server.id, snap.libvirt_name)
    with transaction.atomic():
        Snapshot.objects.filter(pk=operation.params["snapshot"]).delete()
        _finished_or_stop(finish(operation), operation)


def suspend(operation: Operation) -> None:
    server = operation.server
    host = _host(server)
    metering.meter_server(server)
    if server.status == Status.RESCUE:
        # The rescue system goes: the server's own domain is defined again (left off), so that unsuspending
        # starts the server itself.
        _define_own_system(server, host)
    state = driver.power_off(host, server.id)
    by = operation.params.get("by", SuspendedBy.STAFF)
    reason = operation.params.get("reason") or ""
    if by == SuspendedBy.STAFF:
        # A staff member's reason is internal; the customer is told to get in touch.
        public, detail = _("Suspended by staff. Please contact support."), reason
    else:
        public, detail = reason or _("Suspended."), ""
    finish(
        operation,
        status=Status.SUSPENDED,
        power_state=state,
        status_reason=public,
        status_detail=detail,
        suspended_by=by,
    )


def unsuspend(operation: Operation) -> None:
    state = driver.start(_host(operation.server), operation.server.id)
    metering.after_start(operation.server)
    finish(
        operation,
        status=Status.RUNNING,
        power_state=state,
        status_reason=None,
        status_detail="",
        suspended_by=SuspendedBy.NOBODY,
    )


def attach_iso(operation: Operation) -> None:
    """Copy the ISO to the host (once per host), put it in the CD-ROM drive booted first, and power-cycle a
    running server so that it boots from it."""
    server = operation.server
    iso = Image.objects.get(slug=operation.params["iso"])
    host = _host(server)
    announce(operation, operation_steps.COPY_ISO)
    iso_path = guest.iso_file(host, iso, owner=str(operation.id))
    _step(operation, "attach_iso:copied")
    _boot_with_iso(operation, iso_path, iso)


def detach_iso(operation: Operation) -> None:
    """Remove the CD-ROM drive and boot from the disk again (a running server is power-cycled)."""
    _boot_with_iso(operation, "", None)


def _boot_with_iso(operation: Operation, iso_path: str, iso: Image | None) -> None:
    """Define the domain with the ISO in its CD-ROM drive (or none), then, when it was running, shut it down
    (powered off after SHUTDOWN_TIMEOUT) and start it so that it boots as defined: skipped when it runs so
    already (a retry after the start)."""
    server = operation.server
    host = _host(server)
    was_running = _was_running(operation)
    driver.set_iso(host, server.id, iso_path)
    _step(operation, f"{operation.type}:defined")
    state = PowerState.SHUTOFF
    if was_running:
        if driver.running_iso(host, server.id) != iso_path:  # None: not running
            metering.meter_server(server)
            announce(operation, operation_steps.GUEST_SHUTDOWN)
            driver.shutdown(host, server.id, settings.SHUTDOWN_TIMEOUT)
        _step(operation, f"{operation.type}:stopped")
        announce(operation, operation_steps.BOOT)
        state = driver.start(host, server.id)
        metering.after_start(server)
    finish(
        operation,
        iso=iso,
        status=Status.RUNNING if was_running else Status.STOPPED,
        power_state=state,
        status_reason=None,
    )


def rescue(operation: Operation) -> None:
    """Boot the rescue system with the server's own disk attached (hypervisor.driver.define_rescue). Until
    the domain is defined for rescue, the overlay and the seed are made afresh; after that a retry only
    starts it."""
    server = operation.server
    host = _host(server)
    image = Image.objects.get(slug=operation.params["image"])
    _was_running(operation)  # before anything changes: a failure puts the server back as it was
    announce(operation, operation_steps.PREPARE_RESCUE)
    base_path, boot = guest.rescue_files(server, image, owner=str(operation.id))
    _step(operation, "rescue:copied")
    request = replace(domain_request(server), kernel_boot=boot)
    if not driver.defined_for_rescue(host, request):
        metering.meter_server(server)
        announce(operation, operation_steps.GUEST_SHUTDOWN)
        driver.shutdown(host, server.id, settings.SHUTDOWN_TIMEOUT)
        _step(operation, "rescue:stopped")
        announce(operation, operation_steps.PREPARE_RESCUE)
        rescue_disk = driver.create_rescue_disk(host, request, base_path, max(image.virtual_size_bytes, GIB))
        seed = guest.rescue_seed_iso(server, passwords.unsealed(operation.params), f"rescue-{operation.id}")
        seed_path = driver.write_seed(
            host, request, seed, replace=True, volume_name=request.rescue_seed_volume_name
        )
        _step(operation, "rescue:prepared")
        driver.define_rescue(host, request, rescue_disk, seed_path)
        _step(operation, "rescue:defined")
    announce(operation, operation_steps.BOOT)
    state = driver.start(host, server.id)
    metering.after_start(server)
    finish(operation, status=Status.RESCUE, power_state=state, status_reason=None)


def _define_own_system(server: Server, host: Host) -> None:
    """Stop the rescue system if it runs, define the server's own domain again from the server's data (as a
    create or rebuild defines it) and remove rescue mode's overlay and seed. Each step is idempotent, and a
    domain already running the server's own system is left running."""
    request = domain_request(server)
    driver.stop_rescue(host, request)
    disk_path = driver.disk_path(host, request)
    # Written only when missing, with the instance id the guest has (a rebuilt server's is not its id).
    seed_path = driver.write_seed(host, request, guest.seed_iso(server, guest.instance_id(server)))
    driver.define_domain(host, request, disk_path, seed_path, replace=True)
    driver.delete_rescue_volumes(host, request)


def unrescue(operation: Operation) -> None:
    """Leave rescue mode: the server boots from its own disk again."""
    server = operation.server
    host = _host(server)
    metering.meter_server(server)
    announce(operation, operation_steps.POWER_OFF)
    _define_own_system(server, host)
    _step(operation, "unrescue:defined")
    announce(operation, operation_steps.BOOT)
    state = driver.start(host, server.id)
    metering.after_start(server)
    finish(operation, status=Status.RUNNING, power_state=state, status_reason=None)


def _undo_rescue(operation: Operation) -> dict:
    """The server's changes after a failed rescue: its own domain defined again and started if it ran before
    (the server as it was), or, when that cannot be done, left in rescue mode for the customer to leave
    (which tries the same again). Nothing when the rescue failed before it looked at the domain."""
    server = operation.server
    if "was_running" not in operation.params:
        return {}
    host = server.host
    try:
        if host is None or host.state == Host.State.DOWN:
            raise HypervisorError(str(HOST_DOWN_MESSAGE))
        _define_own_system(server, host)
        if operation.params["was_running"]:
            state = driver.start(host, server.id)
            metering.after_start(server)
            return {"status": Status.RUNNING, "power_state": state}
        return {"status": Status.STOPPED, "power_state": driver.power_state(host, server.id)}
    except HypervisorError as exc:
        log.warning("putting back %s after a failed rescue: %s", server.id, exc.message)
        return {"status": Status.RESCUE, "status_reason": str(RESCUE_LEFT_OVER), "status_detail": exc.message}


def reset_password(operation: Operation) -> None:
    """Set root's password in the running guest through the QEMU guest agent. When the agent does not
    answer, the operation fails saying so and pointing to rescue mode (the failure banner offers it)."""
    server = operation.server
    host = _host(server)
    announce(operation, operation_steps.GUEST_AGENT)
    try:
        driver.set_user_password(
            host, server.id, "root", passwords.unsealed(operation.params), settings.GUEST_AGENT_TIMEOUT
        )
    except driver.GuestAgentUnavailable as exc:
        fail(operation, GUEST_AGENT_TEXT, exc.message)
        return
    finish(operation)


def _never_became_usable(server: Server) -> bool:
    """The panel created the server, and no create or rebuild of it ever succeeded: it never ran for its
    owner."""
    made = Operation.objects.filter(server=server, type__in=(Task.CREATE, Task.REBUILD))
    return (
        made.filter(type=Task.CREATE).exists() and not made.filter(status=Operation.Status.SUCCEEDED).exists()
    )


def _end_billing(server: Server) -> None:
    """The deleted server's subscription ends; one that never became usable (a failed create whose domain
    had to wait for this delete to be destroyed) is also not charged: its invoice is voided or credited.
    Both are idempotent (the subscription's move to ended is the guard)."""
    if _never_became_usable(server):
        subscriptions.cancel_unused_subscription(str(server.id))
    else:
        subscriptions.end_subscription(str(server.id))


def delete(operation: Operation) -> None:
    server = operation.server
    if server.host is not None:
        host = _host(server)
        metering.meter_server(server)
        driver.destroy(host, domain_request(server))
    _step(operation, "delete:destroyed")
    with transaction.atomic():
        # The one lock order: the customer, the host (the claim's release), the addresses, then billing.
        LockOrder().customer(server.owner_id)
        claims.release(server.id)
        # Named addresses' PTR records are withdrawn as soon as this commits (the sync would, later).
        reverse_dns.push_after_commit(row.pk for row in server.ip_addresses if row.ptr)
        ipam.release(server.id)
        _end_billing(server)
        Snapshot.objects.filter(server=server).delete()
        pruning.on_server_deleted(server)  # its backups go now, or after the grace period
        closed = finish(
            operation, status=Status.DELETED, power_state=PowerState.NONE, deleted_at=timezone.now(), iso=None
        )
        _finished_or_stop(closed, operation)


HANDLERS: dict[str, Callable[[Operation], None]] = {
    Task.CREATE: create,
    Task.START: start,
    Task.POWER_OFF: power_off,
    Task.SHUTDOWN: shutdown,
    Task.REBOOT: reboot,
    Task.RESIZE: resize,
    Task.REBUILD: rebuild,
    Task.SNAPSHOT: snapshot,
    Task.RESTORE: restore,
    Task.DELETE_SNAPSHOT: delete_snapshot,
    Task.SUSPEND: suspend,
    Task.UNSUSPEND: unsuspend,
    Task.ATTACH_ISO: attach_iso,
    Task.DETACH_ISO: detach_iso,
    Task.RESCUE: rescue,
    Task.UNRESCUE: unrescue,
    Task.RESET_PASSWORD: reset_password,
    Task.DELETE: delete,
    Task.BACKUP: runs.backup,
    Task.RESTORE_BACKUP: runs.restore_backup,
    Task.MIGRATE: migration.migrate,
    Task.EVACUATE: evacuation.evacuate,
}


def _never_usable(operation: Operation) -> bool:
    """A create, or a rebuild that had to claim everything again after a failed create: the server never
    became usable, so what it holds and what it was charged go back when it fails."""
    return operation.type == Task.CREATE or (
        operation.type == Task.REBUILD and bool(operation.params.get("reclaimed"))
    )


def _give_back_unused(server: Server) -> None:
    """In the caller's transaction, after the customer's lock and in the one lock order (host, address, then
    billing): free its capacity and its address, and end the subscription of a server that never became
    usable (voiding or crediting what it was charged). Each step is idempotent."""
    claims.release(server.id)
    ipam.release(server.id)
    subscriptions.cancel_unused_subscription(str(server.id))


def _cleaned_up(operation: Operation) -> bool:
    """Destroy what a failed create (or reclaiming rebuild) made on the host. True when nothing of it is
    left there: the destroy succeeded, or the failure came before its domain was defined. False
    when the domain may still exist (the host is down, or the destroy failed)."""
    server = operation.server
    if server.host is not None and server.host.state != Host.State.DOWN:
        try:
            driver.destroy(server.host, domain_request(server))
            return True
        except HypervisorError as exc:
            log.warning("cleanup after failed %s of %s: %s", operation.type, server.id, exc.message)
    return server.host is None or not operation.params.get("defining")


def _pending_cleanup_detail(message: str) -> str:
    return f"{message}\n{CLEANUP_PENDING}"


def on_failure(operation: Operation, message: str) -> None:
    """Undo what a failed step left behind and record the failure: the customer gets a plain message,
    staff the error itself. A failed create gives back what it holds only when nothing of it is left on the
    host; otherwise the server keeps its capacity, address and subscription until it is deleted. A worker
    that no longer holds the lease undoes nothing: the worker that does owns the outcome."""
    server = operation.server
    if not leases.still_held(operation):
        log.warning("not failing operation %s: it was closed or taken over meanwhile", operation.pk)
        return
    if _never_usable(operation):
        cleaned = _cleaned_up(operation)
        with transaction.atomic():
            LockOrder().customer(server.owner_id)  # the lock order: the customer before the server
            closed = fail(
                operation,
                str(FAILED_STATUS_REASONS[operation.type]),
                message,
                status=Status.ERROR,
                status_reason=str(FAILED_STATUS_REASONS[Task.CREATE]),
                status_detail=message if cleaned else _pending_cleanup_detail(message),
            )
            if closed and cleaned:
                _give_back_unused(server)
    elif operation.type in (Task.DELETE, Task.REBUILD):
        fail(
            operation,
            str(FAILED_STATUS_REASONS[operation.type]),
            message,
            status=Status.ERROR,
            status_reason=str(FAILED_STATUS_REASONS[operation.type]),
            status_detail=message,
        )
    elif operation.type == Task.RESIZE:
        old = operation.params["from"]
        if server.host is not None and server.host.state != Host.State.DOWN:
            try:  # the domain's saved configuration goes back to the size the panel records
                driver.set_resources(server.host, server.id, old["vcpus"], old["memory_mib"])
            except HypervisorError as exc:
                log.warning("reverting the failed resize of %s: %s", server.id, exc.message)
        with transaction.atomic():
            LockOrder().customer(server.owner_id)  # the lock order: customer, server, host
            if fail(operation, _public_message(message), message):
                _give_back_resize(operation)
                subscriptions.undo_plan_change(str(server.id), operation.params.get("billing_undo") or {})
    elif operation.type in (Task.ATTACH_ISO, Task.DETACH_ISO):
        if server.host is not None and server.host.state != Host.State.DOWN:
            try:  # the domain's CD-ROM drive goes back to what the panel records (Server.iso)
                driver.set_iso(server.host, server.id, _iso_path(server))
            except HypervisorError as exc:
                log.warning("reverting the CD-ROM drive of %s: %s", server.id, exc.message)
        fail(operation, _public_message(message), message)
    elif operation.type == Task.RESCUE:
        fail(operation, _public_message(message), message, **_undo_rescue(operation))
    elif operation.type == Task.BACKUP:
        runs.backup_failed(operation, message)
        fail(operation, _public_message(message), message)
    elif operation.type == Task.RESTORE_BACKUP:
        fail(operation, _public_message(message), message, **runs.restore_failed_changes(operation))
    elif operation.type == Task.MIGRATE:
        migration.migrate_failed(operation, message)  # the server stays where it was; the target's claim goes
    elif operation.type == Task.EVACUATE:
        with transaction.atomic():
            LockOrder().customer(server.owner_id)  # the lock order: customer, server, host (the give-back)
            changes = evacuation.evacuate_failed(operation, message)
            if fail(operation, _public_message(message), message, **changes):
                evacuation.release_unused_target(operation)
    else:
        fail(operation, _public_message(message), message)


def execute(operation_id: str) -> None:
    """Run one operation to its end under its lease, or raise RetryLater (a transient hypervisor error, or
    the host's turn for heavy operations not come yet)."""
    operation = begin(operation_id)
    if operation is None:
        return
    # Texts the run stores (errors, status reasons) are kept in the source language and translated for
    # each reader when shown (the `stored_text` filter, the API).
    with leases.heartbeat(operation), translation.override(None):
        _run(operation)


def _run(operation: Operation) -> None:
    if operation.attempts > settings.OPERATION_MAX_ATTEMPTS:
        # Deliveries that never recorded an outcome (a worker killed mid-task) count as attempts too.
        on_failure(
            operation, _("The operation was given up after %(n)s attempts.") % {"n": operation.attempts - 1}
        )
        return
    try:
        HANDLERS[operation.type](operation)
    except HypervisorError as exc:
        if exc.transient and operation.attempts < settings.OPERATION_MAX_ATTEMPTS:
            countdown = min(60, 2**operation.attempts)
            leases.wait(operation, countdown)
            raise RetryLater(countdown=countdown, reason=exc.message) from exc
        on_failure(operation, exc.message)
    except leases.LeaseLost as exc:
        log.warning("stopping operation %s: %s", operation.pk, exc)
    except (OperationalError, InterfaceError) as exc:
        # Postgres went away (a restart, a failover): nothing can be recorded now. The connection is dropped
        # and the attempt tried again (the steps are idempotent); if that retry is lost too, the lease runs
        # out and the reaper sends the operation again.
        connection.close()
        raise RetryLater(countdown=min(60, 2**operation.attempts), reason=str(exc)) from exc
    except SoftTimeLimitExceeded:
        on_failure(operation, _("The operation took too long and was stopped."))
    except Exception:
        log.exception("operation %s failed", operation.pk)
        on_failure(operation, _("An internal error occurred; the staff have been notified."))


def _give_back_resize(operation: Operation) -> None:
    """Return the capacity a resize claimed for the new size (the allocation goes back to the old size)."""
    old = operation.params["from"]
    claims.give_back(operation.server_id, Resources(old["vcpus"], old["memory_mib"], old["disk_gib"]))


def reap_stuck_operations() -> int:
    """Fail operations that ran past their deadline and free their servers. A create or delete that never
    finished leaves the server in error (the customer can delete it again); other actions leave the status.
    A create no worker ever began gives back what it holds; one that began may have a running domain (its
    worker may even still be at it), so it keeps its capacity, address and subscription, and deleting the
    server destroys the domain and ends the billing."""
    with translation.override(None):  # stored texts in the source language (see execute)
        return _reap_stuck_operations()


def _reap_stuck_operations() -> int:
    reaped = 0
    for operation in Operation.objects.filter(status__in=OPEN, deadline__lt=timezone.now()).select_related(
        "server"
    ):
        message = _("The operation did not finish before its deadline.")
        if operation.type == Task.MIGRATE:  # the target's claim goes (or the source's, if it moved after all)
            reaped += migration.reap(operation, message)
            continue
        # Closed only from the status seen here: one a worker begins meanwhile waits for a later run.
        unstarted = operation.status == Operation.Status.PENDING
        nothing_on_host = unstarted and _never_usable(operation)
        changes = {}
        if operation.type in FAILED_STATUS_REASONS:
            changes = {
                "status": Status.ERROR,
                "status_reason": str(FAILED_STATUS_REASONS[operation.type]),
                "status_detail": message,
            }
            if _never_usable(operation) and not nothing_on_host:
                changes["status_detail"] = _pending_cleanup_detail(message)
        if operation.type == Task.RESTORE_BACKUP:
            changes = runs.restore_failed_changes(operation)
        if operation.type == Task.EVACUATE:
            changes = evacuation.evacuate_failed(operation, message)
        if operation.type == Task.RESCUE and not unstarted:
            # Its worker may have left the domain defined for rescue: leaving rescue mode puts it right.
            changes = {
                "status": Status.RESCUE,
                "status_reason": str(RESCUE_LEFT_OVER),
                "status_detail": message,
            }
        with transaction.atomic():
            LockOrder().customer(operation.server.owner_id)  # the lock order: the customer before the server
            closed = fail(operation, message, message, only_from=(operation.status,), **changes)
            if closed and nothing_on_host:
                _give_back_unused(operation.server)
            if closed and operation.type == Task.BACKUP:
                runs.mark_backup_failed(operation, message)  # its leftovers go with pruning
            if closed and operation.type == Task.EVACUATE:
                evacuation.release_unused_target(operation)  # unless it reached its target
            if closed and operation.type == Task.RESIZE:
                _give_back_resize(operation)
                subscriptions.undo_plan_change(
                    str(operation.server_id), operation.params.get("billing_undo") or {}
                )
        reaped += closed
    return reaped
