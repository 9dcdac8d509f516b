"""Carrying out operations in a worker. Each handler's steps are idempotent (they look at the hypervisor
before acting), so a redelivered or retried task finishes the work instead of repeating it. Every exit
clears the server's task: success, failure, or the reaper after a deadline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from billing import services as billing
from billing.models import Plan
from hypervisor import driver, ipam
from hypervisor import services as hypervisor
from hypervisor.connection import HypervisorError
from hypervisor.models import Allocation, BaseVolume, Host, Image
from hypervisor.xml.domain import KernelBoot

from . import guest, metering
from .actions import HOST_DOWN_MESSAGE
from .faults import pause_point
from .models import Operation, Server, Snapshot

log = logging.getLogger(__name__)
S = Server.Status
T = Operation.Type
OPEN = (Operation.Status.PENDING, Operation.Status.RUNNING)
FAILED_STATUS_REASONS = {
    T.CREATE: gettext_lazy("Creating the server failed: %(error)s"),
    T.DELETE: gettext_lazy("Deleting the server failed: %(error)s"),
    T.REBUILD: gettext_lazy("Rebuilding the server failed: %(error)s"),
}


@dataclass
class RetryLater(Exception):
    """A transient hypervisor error: the task should run again after `countdown` seconds."""

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
    return guest.domain_request(server, boot)


def begin(operation_id: str) -> Operation | None:
    """Mark the operation running (counting the attempt); None if it has already finished."""
    with transaction.atomic():
        operation = (
            Operation.objects.select_for_update(of=("self",))
            .select_related("server", "server__host", "server__plan", "server__image")
            .defer("server__host__inventory")
            .filter(pk=operation_id)
            .first()
        )
        if operation is None or operation.is_finished:
            return None
        operation.status = Operation.Status.RUNNING
        operation.attempts += 1
        operation.started_at = operation.started_at or timezone.now()
        operation.save(update_fields=["status", "attempts", "started_at"])
        if operation.type == T.CREATE:
            Server.objects.filter(pk=operation.server_id, status=S.PENDING).update(status=S.PROVISIONING)
    return operation


def _close(operation: Operation, status: str, error: str, server_changes: dict) -> bool:
    """Close a still-open operation and clear its server's task in one transaction. An operation that was
    closed meanwhile (by the reaper, or by another delivery of the same task) is left as it is."""
    now = timezone.now()
    with transaction.atomic():
        closed = Operation.objects.filter(pk=operation.pk, status__in=OPEN).update(
            status=status, finished_at=now, error=error
        )
        if closed:
            Server.objects.filter(pk=operation.server_id, task=operation.type).update(
                task=None, updated_at=now, **server_changes
            )
    return bool(closed)


def finish(operation: Operation, **server_changes) -> bool:
    """Record success and clear the server's task."""
    return _close(operation, Operation.Status.SUCCEEDED, "", server_changes)


def fail(operation: Operation, message: str, **server_changes) -> bool:
    """Record failure and clear the server's task."""
    return _close(operation, Operation.Status.FAILED, message, server_changes)


def _host(server: Server) -> Host:
    """The server's host; fails fast (no libvirt call that would hang) when the host is down."""
    if server.host is None:
        raise HypervisorError(_("the server has no host"))
    if server.host.state == Host.State.DOWN:
        raise HypervisorError(str(HOST_DOWN_MESSAGE))
    return server.host


def create(operation: Operation) -> None:
    server = operation.server
    host = _host(server)
    base_path, boot = guest.image_files(server, owner=str(operation.id))
    request = guest.domain_request(server, boot)
    disk_path = driver.create_disk(host, request, base_path)
    pause_point("create:disk")
    # Until the domain is defined the seed is (re)written: an earlier attempt may have died mid-upload.
    defined = driver.power_state(host, server.id) is not None
    seed_path = driver.write_seed(host, request, guest.seed_iso(server), replace=not defined)
    driver.define_domain(host, request, disk_path, seed_path)
    pause_point("create:defined")
    state = driver.start(host, server.id)
    metering.after_start(server, new=True)
    finish(operation, status=S.RUNNING, power_state=state, status_reason=None)


def start(operation: Operation) -> None:
    state = driver.start(_host(operation.server), operation.server.id)
    metering.after_start(operation.server)
    finish(operation, status=S.RUNNING, power_state=state, status_reason=None)


def power_off(operation: Operation) -> None:
    host = _host(operation.server)
    metering.meter_server(operation.server)
    state = driver.power_off(host, operation.server.id)
    finish(operation, status=S.STOPPED, power_state=state, status_reason=None)


def shutdown(operation: Operation) -> None:
    host = _host(operation.server)
    metering.meter_server(operation.server)
    graceful = driver.shutdown(host, operation.server.id, settings.SHUTDOWN_TIMEOUT)
    reason = None if graceful else _("The guest did not shut down in time and was powered off.")
    finish(operation, status=S.STOPPED, power_state="shutoff", status_reason=reason)


def reboot(operation: Operation) -> None:
    graceful = driver.reboot(_host(operation.server), operation.server.id, settings.REBOOT_TIMEOUT)
    reason = None if graceful else _("The guest did not reboot in time and was reset.")
    finish(operation, status=S.RUNNING, power_state="running", status_reason=reason)


def _remember(operation: Operation, **values) -> None:
    """Keep facts a retried attempt needs (e.g. whether the server was running before it began)."""
    operation.params = {**operation.params, **values}
    Operation.objects.filter(pk=operation.pk).update(params=operation.params)


def _was_running(operation: Operation) -> bool:
    if "was_running" not in operation.params:
        _remember(
            operation,
            was_running=driver.power_state(_host(operation.server), operation.server.id) == "running",
        )
    return operation.params["was_running"]


def resize(operation: Operation) -> None:
    """New vCPU and memory sizes apply with a restart (graceful shutdown first); the disk grows live."""
    server = operation.server
    host = _host(server)
    plan = Plan.objects.get(slug=operation.params["plan"])
    was_running = _was_running(operation)
    request = replace(
        domain_request(server), vcpus=plan.vcpus, memory_mib=plan.memory_mib, disk_gib=plan.disk_gib
    )
    driver.resize_disk(host, request)
    driver.set_resources(host, server.id, plan.vcpus, plan.memory_mib)
    pause_point("resize:configured")
    if was_running and driver.current_resources(host, server.id) != (plan.vcpus, plan.memory_mib):
        metering.meter_server(server)
        driver.shutdown(host, server.id, settings.SHUTDOWN_TIMEOUT)
    state = driver.start(host, server.id) if was_running else "shutoff"
    server.plan = plan
    if was_running:
        metering.apply_port_speed(server, metering.desired_speed(server))
    finish(
        operation,
        plan=plan,
        vcpus=plan.vcpus,
        memory_mib=plan.memory_mib,
        disk_gib=plan.disk_gib,
        status=S.RUNNING if was_running else S.STOPPED,
        power_state=state,
        status_reason=None,
    )


def rebuild(operation: Operation) -> None:
    """A fresh disk from the image and a new seed (a new instance id, so cloud-init runs again)."""
    server = operation.server
    host = _host(server)
    image = Image.objects.get(slug=operation.params["image"])
    server.image = image
    if driver.power_state(host, server.id) is not None:  # a vanished domain is simply defined anew
        driver.power_off(host, server.id)
        driver.drop_snapshots(host, server.id)
    base_path, boot = guest.image_files(server, owner=str(operation.id))
    request = guest.domain_request(server, boot)
    driver.delete_disk(host, request)
    disk_path = driver.create_disk(host, request, base_path)
    seed_path = driver.write_seed(
        host, request, guest.seed_iso(server, f"{server.id}-{operation.id.hex[:8]}"), replace=True
    )
    driver.define_domain(host, request, disk_path, seed_path, replace=True)
    state = driver.start(host, server.id)
    metering.after_start(server)
    with transaction.atomic():
        Snapshot.objects.filter(server=server).delete()  # the rebuild dropped the old disk's snapshots
        finish(operation, image=image, status=S.RUNNING, power_state=state, status_reason=None)


def snapshot_name(operation: Operation) -> str:
    return f"snap-{operation.id.hex[:12]}"


def snapshot(operation: Operation) -> None:
    server = operation.server
    name = snapshot_name(operation)
    driver.create_snapshot(_host(server), server.id, name, operation.params["name"])
    with transaction.atomic():
        Snapshot.objects.get_or_create(
            server=server, libvirt_name=name, defaults={"name": operation.params["name"]}
        )
        finish(operation)


def restore(operation: Operation) -> None:
    server = operation.server
    snap = Snapshot.objects.get(pk=operation.params["snapshot"], server=server)
    state = driver.revert_to_snapshot(_host(server), server.id, snap.libvirt_name)
    if state == "running":
        metering.after_start(server)
    finish(
        operation,
        status=S.RUNNING if state == "running" else S.STOPPED,
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
        finish(operation)


def suspend(operation: Operation) -> None:
    server = operation.server
    host = _host(server)
    metering.meter_server(server)
    state = driver.power_off(host, server.id)
    reason = operation.params.get("reason") or _("Suspended by staff.")
    by = operation.params.get("by", "staff")
    finish(operation, status=S.SUSPENDED, power_state=state, status_reason=reason, suspended_by=by)


def unsuspend(operation: Operation) -> None:
    state = driver.start(_host(operation.server), operation.server.id)
    metering.after_start(operation.server)
    finish(operation, status=S.RUNNING, power_state=state, status_reason=None, suspended_by="")


def delete(operation: Operation) -> None:
    server = operation.server
    if server.host is not None:
        host = _host(server)
        metering.meter_server(server)
        driver.destroy(host, domain_request(server))
    pause_point("delete:destroyed")
    with transaction.atomic():
        hypervisor.release(server.id)
        ipam.release(server.id)
        Snapshot.objects.filter(server=server).delete()
        billing.end_subscription(str(server.id))
        finish(operation, status=S.DELETED, power_state="", deleted_at=timezone.now())


HANDLERS: dict[str, Callable[[Operation], None]] = {
    T.CREATE: create,
    T.START: start,
    T.POWER_OFF: power_off,
    T.SHUTDOWN: shutdown,
    T.REBOOT: reboot,
    T.RESIZE: resize,
    T.REBUILD: rebuild,
    T.SNAPSHOT: snapshot,
    T.RESTORE: restore,
    T.DELETE_SNAPSHOT: delete_snapshot,
    T.SUSPEND: suspend,
    T.UNSUSPEND: unsuspend,
    T.DELETE: delete,
}


def on_failure(operation: Operation, message: str) -> None:
    """Undo what a failed step left behind and record the failure."""
    server = operation.server
    if operation.type == T.CREATE:
        if server.host is not None and server.host.state != Host.State.DOWN:
            try:
                driver.destroy(server.host, domain_request(server))
            except HypervisorError as exc:
                log.warning("cleanup after failed create of %s: %s", server.id, exc.message)
        with transaction.atomic():
            hypervisor.release(server.id)
            ipam.release(server.id)
            fail(
                operation,
                message,
                status=S.ERROR,
                status_reason=FAILED_STATUS_REASONS[T.CREATE] % {"error": message},
            )
    elif operation.type in (T.DELETE, T.REBUILD):
        fail(
            operation,
            message,
            status=S.ERROR,
            status_reason=FAILED_STATUS_REASONS[operation.type] % {"error": message},
        )
    elif operation.type == T.RESIZE:
        old = operation.params["from"]
        if server.host is not None and server.host.state != Host.State.DOWN:
            try:  # the domain's saved configuration goes back to the size the panel records
                driver.set_resources(server.host, server.id, old["vcpus"], old["memory_mib"])
            except HypervisorError as exc:
                log.warning("reverting the failed resize of %s: %s", server.id, exc.message)
        with transaction.atomic():
            _give_back_resize(operation)
            billing.undo_plan_change(str(server.id), operation.params.get("billing_undo") or {})
            fail(operation, message)
    else:
        fail(operation, message)


def execute(operation_id: str) -> None:
    """Run one operation to its end, or raise RetryLater for a transient hypervisor error."""
    operation = begin(operation_id)
    if operation is None:
        return
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
            raise RetryLater(countdown=min(60, 2**operation.attempts), reason=exc.message) from exc
        on_failure(operation, exc.message)
    except SoftTimeLimitExceeded:
        on_failure(operation, _("The operation took too long and was stopped."))
    except Exception:
        log.exception("operation %s failed", operation_id)
        on_failure(operation, _("An internal error occurred; the staff have been notified."))


REDISPATCH_AFTER = timedelta(minutes=2)


def redispatch_unstarted_operations() -> int:
    """Send again operations that no worker has started (the web process died between commit and send,
    or the broker was down). Running an operation twice is harmless: `begin` skips finished ones."""
    from .actions import dispatch

    cutoff = timezone.now() - REDISPATCH_AFTER
    waiting = Operation.objects.filter(
        status=Operation.Status.PENDING, created_at__lt=cutoff, deadline__gte=timezone.now()
    ).values_list("id", flat=True)
    count = 0
    for operation_id in waiting:
        dispatch(operation_id)
        count += 1
    return count


def _give_back_resize(operation: Operation) -> None:
    """Return the capacity a resize claimed for the new size (the allocation goes back to the old size)."""
    old = operation.params["from"]
    Allocation.objects.filter(consumer_uuid=operation.server_id).update(
        vcpus=old["vcpus"], memory_mib=old["memory_mib"], disk_gib=old["disk_gib"]
    )


def reap_stuck_operations() -> int:
    """Fail operations that ran past their deadline and free their servers. A create or delete that never
    finished leaves the server in error (the customer can delete it again); other actions leave the status."""
    reaped = 0
    for operation in Operation.objects.filter(status__in=OPEN, deadline__lt=timezone.now()):
        message = _("The operation did not finish before its deadline.")
        changes = {}
        if operation.type in FAILED_STATUS_REASONS:
            changes = {
                "status": S.ERROR,
                "status_reason": FAILED_STATUS_REASONS[operation.type] % {"error": message},
            }
        with transaction.atomic():
            closed = fail(operation, message, **changes)
            if closed and operation.type == T.RESIZE:
                _give_back_resize(operation)
                billing.undo_plan_change(str(operation.server_id), operation.params.get("billing_undo") or {})
        reaped += closed
    return reaped
