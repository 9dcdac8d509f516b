"""The server's vocabularies in templates (panel.servers.states): `{{ server.task|task_progress }}` says
what a running task is doing, `{{ server.status|status_hint }}` what a status means for the customer."""

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.translation import gettext

from panel.servers import operation_steps
from panel.servers.states import STATUS_HINTS, TASK_PROGRESS, Status, Task

register = template.Library()


@register.filter
def task_progress(task: str | None) -> str:
    """ "Rebooting…" for a reboot; an unknown task is shown as it is."""
    if not task:
        return ""
    return str(TASK_PROGRESS[Task(task)]) if task in Task.values else f"{task}…"


@register.filter
def status_label(status: str) -> str:
    """The status's name in the reader's language, as server.get_status_display says it, without building
    the field's choices again for every row of a list. An unknown status is shown as it is."""
    try:
        return str(Status(status).label)
    except ValueError:
        return status


@register.filter
def status_hint(status: str) -> str:
    return str(STATUS_HINTS[Status(status)]) if status in Status.values else ""


@register.filter
def stored_text(value: str | None) -> str:
    """A text the panel stored in its source language (an operation's error, a status reason), in the
    reader's language when the catalogue has it; other texts (a staff member's own words) as they are."""
    return gettext(value) if value else ""


@register.filter
def step_label(step: str | None) -> str:
    """The step a long action is at, with its time budget (panel.servers.operation_steps)."""
    return operation_steps.label(step or "")


@register.filter
def seconds_since(moment) -> int | None:
    """Whole seconds from `moment` until now (how long an action has run)."""
    if not isinstance(moment, datetime):  # also "" for a missing operation
        return None
    return max(0, int((timezone.now() - moment).total_seconds()))
