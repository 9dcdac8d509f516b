"""The server's state machine: its vocabularies and the moves between them, in one place.

Like Nova's vm_states / task_states / power_state:
- `Status`: what the customer sees.
- `Task`: the action in flight (null when idle). A task is the type of the operation that runs it, so
  `Operation.type` uses the same vocabulary.
- `PowerState`: the last state the hypervisor reported (`hypervisor.power_state`, the hypervisor's own
  vocabulary; re-exported here).
- `SuspendedBy`: who suspended the server; only they lift it.

`ACTIONS` says from which statuses each action may start (the compare-and-swap of `actions.request_action`)
and which status the server shows while it runs; `TRANSITIONS` lists every status change the panel
makes, by an action's outcome, by reconcile or by billing.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models
from django.utils.translation import gettext_lazy as _

from hypervisor.power_state import PowerState

__all__ = [
    "ACTIONS",
    "Action",
    "PowerState",
    "POWER_OFF_QUESTION",
    "RESCUE_QUESTION",
    "STATUS_HINTS",
    "Status",
    "SuspendedBy",
    "TASK_PROGRESS",
    "TRANSITIONS",
    "Task",
    "UNRESCUE_QUESTION",
    "may_move",
]


class Status(models.TextChoices):
    PENDING = "pending", _("Pending")
    PROVISIONING = "provisioning", _("Provisioning")
    RUNNING = "running", _("Running")
    STOPPED = "stopped", _("Stopped")
    SUSPENDED = "suspended", _("Suspended")
    RESCUE = "rescue", _("Rescue mode")
    ERROR = "error", _("Error")
    DELETING = "deleting", _("Deleting")
    DELETED = "deleted", _("Deleted")


class Task(models.TextChoices):
    CREATE = "create", _("Create")
    START = "start", _("Start")
    SHUTDOWN = "shutdown", _("Shut down")
    POWER_OFF = "power_off", _("Power off")
    REBOOT = "reboot", _("Reboot")
    RESIZE = "resize", _("Resize")
    REBUILD = "rebuild", _("Rebuild")
    SNAPSHOT = "snapshot", _("Snapshot")
    RESTORE = "restore", _("Restore snapshot")
    DELETE_SNAPSHOT = "delete_snapshot", _("Delete snapshot")
    SUSPEND = "suspend", _("Suspend")
    UNSUSPEND = "unsuspend", _("Unsuspend")
    RESCUE = "rescue", _("Start rescue mode")
    UNRESCUE = "unrescue", _("Leave rescue mode")
    RESET_PASSWORD = "reset_password", _("Reset root password")
    ATTACH_ISO = "attach_iso", _("Attach ISO")
    DETACH_ISO = "detach_iso", _("Detach ISO")
    DELETE = "delete", _("Delete")
    BACKUP = "backup", _("Back up")
    RESTORE_BACKUP = "restore_backup", _("Restore backup")
    # Staff only (panel.servers.migration): the server moves to another host of its region, live while it
    # runs, cold otherwise; an evacuation rebuilds it elsewhere when its host is down for good.
    MIGRATE = "migrate", _("Migrate")
    EVACUATE = "evacuate", _("Evacuate")


class SuspendedBy(models.TextChoices):
    NOBODY = "", _("Nobody")
    STAFF = "staff", _("Staff")
    BILLING = "billing", _("Billing")
    TRANSFER = "transfer", _("Transfer allowance")


@dataclass(frozen=True)
class Action:
    allowed_from: frozenset[Status]
    label: str
    status_while_running: Status | None = None


_LIVE = frozenset({Status.RUNNING, Status.STOPPED})

# Which statuses each action may start from (the create task is set at order time, with the server).
ACTIONS: dict[Task, Action] = {
    Task.START: Action(frozenset({Status.STOPPED}), _("start")),
    Task.SHUTDOWN: Action(frozenset({Status.RUNNING}), _("shut down")),
    Task.POWER_OFF: Action(frozenset({Status.RUNNING}), _("power off")),
    Task.REBOOT: Action(frozenset({Status.RUNNING}), _("reboot")),
    Task.RESIZE: Action(_LIVE, _("resize")),
    Task.REBUILD: Action(_LIVE | {Status.ERROR}, _("rebuild")),
    Task.SNAPSHOT: Action(_LIVE, _("snapshot")),
    Task.RESTORE: Action(_LIVE, _("restore")),
    Task.DELETE_SNAPSHOT: Action(_LIVE, _("delete a snapshot of")),
    # From rescue mode too: the server's own domain is defined again, switched off.
    Task.SUSPEND: Action(_LIVE | {Status.RESCUE}, _("suspend")),
    Task.UNSUSPEND: Action(frozenset({Status.SUSPENDED}), _("unsuspend")),
    Task.RESCUE: Action(_LIVE, _("start rescue mode for")),
    Task.UNRESCUE: Action(frozenset({Status.RESCUE}), _("leave rescue mode of")),
    Task.RESET_PASSWORD: Action(frozenset({Status.RUNNING}), _("reset the root password of")),
    Task.ATTACH_ISO: Action(_LIVE, _("attach an ISO to")),
    Task.DETACH_ISO: Action(_LIVE, _("detach the ISO from")),
    Task.DELETE: Action(
        _LIVE | {Status.ERROR, Status.SUSPENDED, Status.RESCUE}, _("delete"), Status.DELETING
    ),
    # A running server is backed up while it runs (panel.backups.runs).
    Task.BACKUP: Action(_LIVE, _("back up")),
    Task.RESTORE_BACKUP: Action(_LIVE, _("restore a backup of")),
    # Staff only. A suspended server's domain is shut off: it moves cold. An evacuated server's host is
    # gone, so whatever the panel last recorded (even an error) is rebuilt elsewhere.
    Task.MIGRATE: Action(_LIVE | {Status.SUSPENDED}, _("migrate")),
    Task.EVACUATE: Action(_LIVE | {Status.SUSPENDED, Status.ERROR}, _("evacuate")),
}

# Every status change: an operation's outcome (success, failure), reconcile (a guest that shut itself
# down or came back, a domain that vanished) and the reaper (a stuck operation fails).
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.PROVISIONING, Status.ERROR}),
    Status.PROVISIONING: frozenset({Status.RUNNING, Status.ERROR}),
    Status.RUNNING: frozenset(
        {Status.STOPPED, Status.SUSPENDED, Status.RESCUE, Status.ERROR, Status.DELETING}
    ),
    Status.STOPPED: frozenset(
        {Status.RUNNING, Status.SUSPENDED, Status.RESCUE, Status.ERROR, Status.DELETING}
    ),
    # Rescue mode ends by leaving it (the server boots normally), a suspension or deleting the server.
    Status.RESCUE: frozenset({Status.RUNNING, Status.SUSPENDED, Status.ERROR, Status.DELETING}),
    Status.SUSPENDED: frozenset({Status.RUNNING, Status.ERROR, Status.DELETING}),
    Status.ERROR: frozenset({Status.RUNNING, Status.STOPPED, Status.DELETING}),
    Status.DELETING: frozenset({Status.DELETED, Status.ERROR}),
    Status.DELETED: frozenset(),
}


# What the pages say while a task runs, and what they say about a server at rest in each status.
TASK_PROGRESS: dict[Task, str] = {
    Task.CREATE: _("Creating…"),
    Task.START: _("Starting…"),
    Task.SHUTDOWN: _("Shutting down…"),
    Task.POWER_OFF: _("Powering off…"),
    Task.REBOOT: _("Rebooting…"),
    Task.RESIZE: _("Resizing…"),
    Task.REBUILD: _("Rebuilding…"),
    Task.SNAPSHOT: _("Taking a snapshot…"),
    Task.RESTORE: _("Restoring a snapshot…"),
    Task.DELETE_SNAPSHOT: _("Deleting a snapshot…"),
    Task.SUSPEND: _("Suspending…"),
    Task.UNSUSPEND: _("Unsuspending…"),
    Task.RESCUE: _("Starting rescue mode…"),
    Task.UNRESCUE: _("Leaving rescue mode…"),
    Task.RESET_PASSWORD: _("Resetting the root password…"),
    Task.ATTACH_ISO: _("Attaching the ISO…"),
    Task.DETACH_ISO: _("Detaching the ISO…"),
    Task.DELETE: _("Deleting…"),
    Task.BACKUP: _("Backing up…"),
    Task.RESTORE_BACKUP: _("Restoring a backup…"),
    Task.MIGRATE: _("Maintenance: moving your server…"),
    Task.EVACUATE: _("Maintenance: moving your server to another host…"),
}

STATUS_HINTS: dict[Status, str] = {
    Status.PENDING: _("Your server is being set up; this usually takes less than a minute."),
    Status.PROVISIONING: _("Your server is being set up; this usually takes less than a minute."),
    Status.RUNNING: _("Your server is up and running."),
    Status.STOPPED: _("Your server is stopped. Start it to bring it back online."),
    Status.SUSPENDED: _("This server is suspended. Please check your account balance or contact support."),
    Status.RESCUE: _(
        "Your server runs the rescue system, with its own disk attached as a second disk. Leave rescue mode "
        "to boot it normally."
    ),
    Status.ERROR: _("Your server is in an error state. You can delete it, or contact support."),
    Status.DELETING: _("Your server is being deleted."),
    Status.DELETED: _("This server has been deleted."),
}


# What power off asks first, on the customer's and the staff's server page (and without JavaScript, on a
# page of its own).
POWER_OFF_QUESTION = _(
    "Power off %(name)s now? This cuts the power at once, like pulling the plug: unsaved data in the server "
    "may be lost. To stop it cleanly, use Shut down."
)


# What starting and leaving rescue mode ask first, on the customer's and the staff's server page.
RESCUE_QUESTION = _(
    "Start rescue mode for %(name)s? The server is shut down and boots a rescue system with its disk "
    "attached. A one-time root password is shown once."
)
UNRESCUE_QUESTION = _(
    "Leave rescue mode of %(name)s? The rescue system is stopped at once (unmount the server's disk first) "
    "and the server boots from its own disk."
)


def may_move(old: str, new: str) -> bool:
    """Whether the panel ever moves a server from status `old` to `new` (staying put always may)."""
    return old == new or Status(new) in TRANSITIONS[Status(old)]
