"""Billing's work for the workers, sent by task name once the transaction that recorded it commits. A
leaf module: it imports no task module and no service, so any billing service may call it."""

from __future__ import annotations

from functools import partial
from typing import Any

from celery import current_app
from django.db import transaction


def send(task_name: str, *args: Any) -> None:
    """Send the task now."""
    # Billing sends ids (at most MAIL_CHUNK of them): repr() says what Celery's saferepr() would, at a tenth
    # of its cost (as panel.dispatch.args_text does for short arguments).
    current_app.send_task(task_name, args=list(args), argsrepr=repr(list(args)), kwargsrepr="{}")


def after_commit(task_name: str, *args: Any, robust: bool = False) -> None:
    """Send the task when the current transaction commits (at once outside a transaction). A failure to
    send raises from the commit, unless `robust` (work that is sent again if lost, as invoice mails are):
    then it is logged and the transaction's other callbacks still run."""
    transaction.on_commit(partial(send, task_name, *args), robust=robust)
