"""What an operation's handler records as it runs (panel.servers.operations, panel.backups.runs): its
outcome (finish, fail: the operation closed and the server's task cleared in one transaction), the step
it enters, how far a long copy is, and facts a retried attempt needs, each under the worker's lease."""

from __future__ import annotations

import logging
import time

from django.db import DatabaseError
from django.utils import timezone
from django.utils.translation import gettext as _

from hypervisor import driver
from hypervisor.connection import HypervisorError
from hypervisor.models import Host
from panel.faults import pause_point
from panel.models import Operation, Server
from panel.servers import leases, operation_rows, operation_states, passwords
from panel.servers.actions import HOST_DOWN_MESSAGE
from panel.servers.states import PowerState

log = logging.getLogger(__name__)

OPEN = operation_states.OPEN


def _close(
    operation: Operation, status: str, error: str, server_changes: dict, detail: str = "", only_from=OPEN
) -> bool:
    """Close a still-open operation (in one of the statuses `only_from`, under the lease as the caller read
    or took it) and clear its server's task in one transaction. An operation that was closed meanwhile (by
    the reaper, or by another delivery of the same task), or whose lease passed to another worker, is left
    as it is."""
    now = timezone.now()
    # A one-time password the operation carried (encrypted) goes when it closes, whatever the outcome.
    cleared = passwords.without_secret(operation.params)
    params = {} if cleared is None else {"params": cleared}
    if "status_reason" in server_changes and server_changes["status_reason"] is None:
        server_changes.setdefault("status_detail", "")  # the staff's detail goes with the reason
    # Every operation ends here: the two hand-written updates (operation_rows) are one statement on Postgres,
    # the server's made only when the operation's closed it.
    closed = operation_rows.update_operation_and_server(
        operation.pk,
        {"status": status, "finished_at": now, "error": error, "detail": detail, "lease_owner": "",
         "lease_expires_at": None, **params},
        {"status": tuple(only_from), "lease_owner": operation.lease_owner},
        operation.server_id,
        {"task": None, "updated_at": now, **server_changes},
        {"task": operation.type},
        only_if_changed=True,
    )  # fmt: skip
    return bool(closed)


def finish(operation: Operation, **server_changes) -> bool:
    """Record success and clear the server's task."""
    return _close(operation, Operation.Status.SUCCEEDED, "", server_changes)


def fail(operation: Operation, message: str, detail: str = "", only_from=OPEN, **server_changes) -> bool:
    """Record failure (`message` for the customer, `detail` for staff) and clear the server's task."""
    return _close(operation, Operation.Status.FAILED, message, server_changes, detail, only_from)


def step(operation: Operation, name: str) -> None:
    """Between two steps: a crash test's pause point, then stop if the lease passed to another worker."""
    pause_point(name)
    leases.check(operation)


def announce(operation: Operation, step: str) -> None:
    """Record the step a long action enters (operation_steps: the server page shows it with its time budget),
    under this worker's lease; a worker that lost it records nothing and stops at its next _step."""
    Operation.objects.filter(pk=operation.pk, lease_owner=operation.lease_owner).update(
        step=step, step_at=timezone.now()
    )


def finished_or_stop(closed: bool, operation: Operation) -> None:
    """Inside a handler's last transaction: when the operation could not be closed (the reaper closed it, or
    its lease passed on), roll back what the transaction did with it."""
    if not closed:
        raise leases.LeaseLost(f"operation {operation.pk} was closed or taken over meanwhile")


def host_of(server: Server) -> Host:
    """The server's host; fails fast (no libvirt call that would hang) when the host is down."""
    if server.host is None:
        raise HypervisorError(_("the server has no host"))
    if server.host.state == Host.State.DOWN:
        raise HypervisorError(str(HOST_DOWN_MESSAGE))
    return server.host


def remember(operation: Operation, **values) -> None:
    """Keep facts a retried attempt needs (e.g. whether the server was running before it began), under this
    worker's lease."""
    leases.check(operation)
    operation.params = {**operation.params, **values}
    kept = operation_rows.update_operation(
        operation.pk, {"params": operation.params}, lease_owner=operation.lease_owner
    )
    if not kept:
        raise leases.LeaseLost(f"operation {operation.pk} was taken over meanwhile")


def remember_defining(operation: Operation) -> None:
    """Recorded before the domain is defined: until then a failure provably left no guest on the host
    (a disk without a domain runs nothing), so what the server holds can go back even when the cleanup
    cannot reach the host."""
    if not operation.params.get("defining"):
        remember(operation, defining=True)


def was_running(operation: Operation) -> bool:
    if "was_running" not in operation.params:
        remember(
            operation,
            was_running=driver.power_state(host_of(operation.server), operation.server.id)
            == PowerState.RUNNING,
        )
    return operation.params["was_running"]


class Progress:
    """Records how far a long copy is in Operation.progress (percent, bytes done and in all, and remaining
    when the copy tells), at most once a second and on every whole percent it passes, under the worker's
    lease; a worker that lost it stops (LeaseLost). With `best_effort` the figures are only for show: a
    write that fails or finds the lease gone is logged or let go and the copy goes on. `flush` writes the
    last figures a throttled call kept."""

    def __init__(
        self, operation: Operation, total: int = 0, interval: float = 1.0, *, best_effort: bool = False
    ):
        self.operation = operation
        self.total = total
        self.interval = interval
        self.best_effort = best_effort
        self._last_at = 0.0
        self._last_percent = -1
        self._latest: dict | None = None

    def __call__(self, done: int, total: int | None = None, remaining: int | None = None) -> None:
        if total is not None:
            self.total = total
        percent = max(0, min(100, done * 100 // self.total)) if self.total > 0 else 0
        figures = {"percent": percent, "bytes_done": done, "bytes_total": self.total}
        if remaining is not None:
            figures["bytes_remaining"] = remaining
        now = time.monotonic()
        if percent == self._last_percent and now - self._last_at < self.interval:
            self._latest = figures
            return
        self._last_at, self._last_percent, self._latest = now, percent, None
        self._write(figures)

    def flush(self) -> None:
        """Write the figures a throttled call kept, if any."""
        if self._latest is not None:
            figures, self._latest = self._latest, None
            self._write(figures)

    def _write(self, figures: dict) -> None:
        try:
            kept = Operation.objects.filter(
                pk=self.operation.pk, lease_owner=self.operation.lease_owner
            ).update(progress=figures)
        except DatabaseError:
            if not self.best_effort:
                raise
            log.exception("recording the progress of %s", self.operation.pk)
            return
        if not kept and not self.best_effort:
            raise leases.LeaseLost(f"operation {self.operation.pk} was taken over meanwhile")
