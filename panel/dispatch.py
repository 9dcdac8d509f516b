"""Sending work to the workers: the one place where services and views enqueue Celery tasks, by name
(a periodic task that fans out to per-host tasks sends them itself, within panel/tasks.py).

A leaf module: it imports no task module (tasks are the top floor, which imports services) and no
service, so any service may call it. Work is recorded in Postgres first (an Operation row, a queued
mail) and sent after that transaction commits. An operation whose send fails is logged, not raised,
because the row is the truth and the reaper sends operations again that no worker has started; any other
send raises.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

from celery.utils.saferepr import saferepr
from django.db import transaction

from panel.celery import app

log = logging.getLogger(__name__)

RUN_OPERATION = "panel.tasks.run_operation"
DELIVER_MAIL = "panel.tasks.deliver_mail"
ENFORCE_TRANSFER = "panel.tasks.enforce_transfer"
PROBE_HOST = "hypervisor.tasks.probe_host"
CHECK_BACKUP_TARGET = "hypervisor.tasks.check_backup_target"
APPLY_NETWORK_FILTER = "panel.tasks.apply_network_filter"
PUSH_REVERSE_DNS = "panel.tasks.push_reverse_dns"
ADVANCE_HOST_MOVE = "panel.tasks.advance_host_move"
ARGS_TEXT_MAX = 1024  # characters of a task's arguments shown to monitoring (Celery's own limit)


def send(
    task_name: str,
    args: Sequence[Any] = (),
    task_id: str | None = None,
    queue: str | None = None,
    time_limit: int | None = None,
) -> None:
    """Send one task now (to `queue`, or the default queue; with `time_limit`, its soft time limit in
    seconds instead of the workers' default); raises what the broker raises."""
    options = {"soft_time_limit": time_limit, "time_limit": time_limit + 60} if time_limit else {}
    args = list(args)
    options.update(argsrepr=args_text(args), kwargsrepr="{}")
    app.send_task(task_name, args=args, task_id=task_id, queue=queue, **options)


def args_text(args: list) -> str:
    """The arguments as monitoring shows them, as Celery's saferepr() would write them (at most
    ARGS_TEXT_MAX characters): for the usual few ids, repr() says the same at a tenth of the cost (a fifth
    of a send's); anything longer (a queued mail with its attachments) is cut short by saferepr()."""
    text = repr(args)
    return text if len(text) <= ARGS_TEXT_MAX else saferepr(args, ARGS_TEXT_MAX)


def after_commit(task_name: str, *args: Any, queue: str | None = None) -> None:
    """Send the task once the current transaction commits (at once outside a transaction). A failure to
    send raises from the commit, as Celery's own `.delay` would: only operations are sent again by the
    reaper, so other work must not be lost quietly."""
    transaction.on_commit(partial(send, task_name, args, queue=queue))


def operation(operation_id, queue: str | None = None, time_limit: int | None = None) -> None:
    """Send the operation to a worker now; its Celery task id is the operation's id. A failure to send is
    logged, not raised: the reaper sends again operations that no worker has begun."""
    try:
        send(
            RUN_OPERATION, [str(operation_id)], task_id=str(operation_id), queue=queue, time_limit=time_limit
        )
    except Exception:
        log.exception("could not send operation %s to the broker; the reaper will retry", operation_id)


def operation_after_commit(operation_id, queue: str | None = None, time_limit: int | None = None) -> None:
    """Send the operation when the transaction that recorded it commits."""
    transaction.on_commit(lambda: operation(operation_id, queue, time_limit))


def host_move_after_commit(move_id: int, queue: str | None = None) -> None:
    """Send the first step of a host's move (drain, evacuation) when the transaction that started it
    commits. A failure to send is logged, not raised: the beat steps every running move within seconds."""

    def send_now() -> None:
        try:
            send(ADVANCE_HOST_MOVE, [move_id], queue=queue)
        except Exception:
            log.exception("could not send host move %s to the broker; the beat will step it", move_id)

    transaction.on_commit(send_now)
