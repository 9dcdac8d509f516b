"""The server's vocabularies in templates (panel.servers.states): `{{ server.task|task_progress }}` says
what a running task is doing, `{{ server.status|status_hint }}` what a status means for the customer."""

from django import template

from panel.servers.states import STATUS_HINTS, TASK_PROGRESS, Status, Task

register = template.Library()


@register.filter
def task_progress(task: str | None) -> str:
    """ "Rebooting…" for a reboot; an unknown task is shown as it is."""
    if not task:
        return ""
    return str(TASK_PROGRESS[Task(task)]) if task in Task.values else f"{task}…"


@register.filter
def status_hint(status: str) -> str:
    return str(STATUS_HINTS[Status(status)]) if status in Status.values else ""
