"""An operation's state machine. The Operation row, not Celery, is the truth: it is recorded pending with
its server's task, a worker marks it running (counting the attempt), and it closes once, succeeded or
failed; the reaper fails operations stuck past their deadline."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Status(models.TextChoices):
    PENDING = "pending", _("Pending")
    RUNNING = "running", _("Running")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")


OPEN = (Status.PENDING, Status.RUNNING)
FINISHED = (Status.SUCCEEDED, Status.FAILED)

TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.RUNNING, Status.FAILED}),
    Status.RUNNING: frozenset({Status.SUCCEEDED, Status.FAILED}),
    Status.SUCCEEDED: frozenset(),
    Status.FAILED: frozenset(),
}


# Operations that copy whole disks to or from backup storage run longer than the workers' default time limit.
LONG_COPIES = ("backup", "restore_backup")


# Beyond a live migration's own time limit (the admin's, after which libvirt's job is aborted): preparing the
# target (its base volumes copied there) and the switch-over.
MIGRATION_MARGIN_SECONDS = 1800


def time_limit(operation_type: str, params: dict) -> int | None:
    """The Celery time limit (seconds) of the operation's task when it is longer than the workers' default:
    a backup, a restore, an order or an evacuation made from a backup, a migration (live: its timeout and a
    margin; cold: a whole disk copied, as long as a backup may take)."""
    if operation_type in LONG_COPIES or (operation_type in ("create", "evacuate") and params.get("backup")):
        return settings.BACKUP_TASK_TIME_LIMIT
    if operation_type == "migrate":
        timeout = int(params.get("timeout_seconds") or settings.MIGRATION_TIMEOUT_SECONDS)
        live = timeout + MIGRATION_MARGIN_SECONDS
        return live if params.get("live") else max(live, settings.BACKUP_TASK_TIME_LIMIT)
    return None


def deadline(operation_type: str, params: dict) -> timedelta:
    """How long after it is recorded the reaper gives the operation up: OPERATION_DEADLINE, or its long time
    limit and ten minutes more."""
    limit = time_limit(operation_type, params)
    return timedelta(seconds=limit + 600 if limit else settings.OPERATION_DEADLINE)


def may_move(old: str, new: str) -> bool:
    """Whether an operation ever moves from `old` to `new` (a worker's retry keeps it running)."""
    return old == new or Status(new) in TRANSITIONS[Status(old)]
