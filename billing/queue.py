"""Billing's work for the workers, sent by task name once the transaction that recorded it commits. A
leaf module: it imports no task module and no service, so any billing service may call it."""

from __future__ import annotations

from functools import partial
from typing import Any

from celery import current_app
from django.db import transaction


def send(task_name: str, *args: Any) -> None:
    current_app.send_task(task_name, args=list(args))


def after_commit(task_name: str, *args: Any) -> None:
    """Send the task when the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(partial(send, task_name, *args))
