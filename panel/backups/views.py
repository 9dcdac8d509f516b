"""The server page's Backups tab: the customer's backup policy (on or off, daily or weekly, how many kept,
what it costs a month), "Back up now", and the server's backups, each restorable onto the server or the
start of a new server. A page of its own; its list part is polled while a backup or restore runs.

Changes go through panel.backups.policies (the policy) and panel.servers.actions (backup, restore);
their refusals come back as messages."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from billing.money import currency
from panel import confirmation
from panel.backups import policies
from panel.backups.models import Backup, BackupPolicy
from panel.backups.policy_forms import BackupPolicyForm
from panel.models import Operation, Server
from panel.servers import actions
from panel.servers.operation_states import OPEN
from panel.servers.queries import own_servers
from panel.servers.states import Status, Task

# While one of these runs, the list is polled (its progress, then its outcome).
BACKUP_TASKS = (Task.BACKUP, Task.RESTORE_BACKUP)
IN_FLIGHT = (Backup.Status.PENDING, Backup.Status.RUNNING)


def listed_backups(server: Server) -> list[Backup]:
    """The server's backups that are kept (not on their way out), newest first, with their operations."""
    return list(
        Backup.objects.filter(server=server, delete_after__isnull=True)
        .select_related("operation", "target")
        .order_by("-created_at", "-pk")
    )


def _list_context(server: Server) -> dict:
    backups = listed_backups(server)
    for backup in backups:
        backup.restore_question = restore_question(server, backup)
    running = None
    if server.task in BACKUP_TASKS:
        running = (
            Operation.objects.filter(server=server, type=server.task, status__in=OPEN)
            .order_by("-created_at")
            .first()
        )
    return {
        "server": server,
        "backups": backups,
        "allowed": actions.allowed_actions(server),
        "running_operation": running,
        "polling": server.task in BACKUP_TASKS or any(b.status in IN_FLIGHT for b in backups),
        # A backup on demand counts within the retention the customer pays for: backups must be on.
        "backups_on": BackupPolicy.objects.filter(server=server, enabled=True).exists(),
        "deleted": server.status in (Status.DELETED, Status.DELETING),
    }


def _page(request: HttpRequest, server: Server, form: BackupPolicyForm | None = None, status: int = 200):
    policy = policies.policy_of(server)
    context = _list_context(server)
    context.update(
        {
            "policy": policy,
            "form": form or BackupPolicyForm.for_policy(policy),
            "price_monthly": policies.price_monthly(server),
            "currency": currency(),
            "retention_max": settings.BACKUP_RETENTION_MAX,
            "available": policies.available(server),
        }
    )
    return render(request, "panel/servers/backups.html", context, status=status)


@login_required
def server_backups(request: HttpRequest, pk) -> HttpResponse:
    """The Backups tab; a POST saves the policy."""
    server = get_object_or_404(own_servers(request), pk=pk)
    if request.method != "POST":
        return _page(request, server)
    form = BackupPolicyForm(request.POST)
    if not form.is_valid():
        return _page(request, server, form, status=422)
    data = form.cleaned_data
    try:
        policy = policies.update_policy(
            server,
            request.user,
            enabled=data["enabled"],
            schedule=data["schedule"],
            retention=data["retention"],
        )
    except ValidationError as exc:
        for field, errors in getattr(exc, "error_dict", {None: exc.error_list}).items():
            form.add_error(field if field in form.fields else None, errors)
        return _page(request, server, form, status=422)
    except actions.ActionError as exc:
        form.add_error(None, exc.message)
        return _page(request, server, form, status=422)
    if policy.enabled:
        messages.success(request, _("Backups of %(name)s are on.") % {"name": server.name})
    else:
        messages.success(request, _("Backups of %(name)s are off.") % {"name": server.name})
    return redirect("server-backups", pk=server.pk)


@login_required
def server_backup_list(request: HttpRequest, pk) -> HttpResponse:
    """The list part of the tab, polled by htmx while a backup or restore runs."""
    server = get_object_or_404(own_servers(request), pk=pk)
    return render(request, "panel/servers/_backup_list.html", _list_context(server))


@login_required
@require_POST
def server_backup_now(request: HttpRequest, pk) -> HttpResponse:
    server = get_object_or_404(own_servers(request), pk=pk)
    try:
        actions.perform(server, Task.BACKUP, request.user, {})
    except actions.ActionError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            _("A backup of %(name)s has started. This page shows when it is done.") % {"name": server.name},
        )
    return redirect("server-backups", pk=server.pk)


@login_required
@require_POST
def server_backup_restore(request: HttpRequest, pk, backup_id: int) -> HttpResponse:
    """Put a backup back onto its server, after asking (in the browser, or on a page of its own)."""
    server = get_object_or_404(own_servers(request), pk=pk)
    backup = get_object_or_404(Backup, pk=backup_id, server=server, delete_after__isnull=True)
    if not confirmation.is_confirmed(request):
        return confirmation.ask(
            request,
            title=_("Restore a backup · %(name)s") % {"name": server.name},
            question=restore_question(server, backup),
            confirm_label=_("Restore backup"),
            cancel_url=reverse("server-backups", args=[server.pk]),
        )
    try:
        actions.perform(server, Task.RESTORE_BACKUP, request.user, {"backup": backup.pk})
    except actions.ActionError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            _("%(name)s is being restored from its backup. This page shows when it is done.")
            % {"name": server.name},
        )
    return redirect("server-backups", pk=server.pk)


def restore_question(server: Server, backup: Backup) -> str:
    """What the customer is asked before a restore."""
    moment = formats.date_format(timezone.localtime(backup.created_at), "DATETIME_FORMAT")
    return _(
        "Restore %(name)s from its backup of %(date)s? The server is powered off, its disk is replaced by "
        "the backup (changes made since, and its snapshots, are lost), and it starts again if it was running."
    ) % {"name": server.name, "date": moment}
