"""Staff pages about servers: the list of every customer's servers, and one server's page with what its
owner sees plus what only staff see (host, raw errors, leases, suspensions) and the staff actions."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from hypervisor import images
from panel import confirmation
from panel.models import Backup, BackupPolicy, Server, Snapshot, User
from panel.pagination import BoundedPaginator
from panel.roles import admin_required, staff_required
from panel.servers import actions, failures, migration, passwords
from panel.servers.descriptions import recent_operations
from panel.servers.migration_forms import MigrateForm
from panel.servers.operation_states import OPEN
from panel.servers.states import ACTIONS, POWER_OFF_QUESTION, RESCUE_QUESTION, UNRESCUE_QUESTION, Task

STAFF_SERVERS_PER_PAGE = 50
# A search matches the servers of at most this many accounts by email (besides hostnames).
SEARCH_OWNERS_MAX = 500
# The operations the staff server page lists, newest first.
STAFF_OPERATIONS_SHOWN = 20
SUSPEND_REASON_MAX_LENGTH = 500

# What staff may do from the server page; the power actions go through actions.perform with the staff
# member as the actor (actions._record_action puts them on the audit log).
STAFF_POWER_ACTIONS = (Task.START, Task.SHUTDOWN, Task.REBOOT, Task.POWER_OFF)
STAFF_RECOVERY_ACTIONS = (Task.RESCUE, Task.UNRESCUE, Task.RESET_PASSWORD)
STAFF_ACTIONS = (*STAFF_POWER_ACTIONS, Task.SUSPEND, Task.UNSUSPEND, *STAFF_RECOVERY_ACTIONS)
# Actions that ask first: in the browser (data-confirm), or on a page of their own without JavaScript.
CONFIRM_QUESTIONS = {
    Task.POWER_OFF: POWER_OFF_QUESTION,
    Task.SUSPEND: gettext_lazy(
        "Suspend %(name)s? The server is stopped and its owner cannot use it until staff unsuspend it."
    ),
    Task.RESCUE: RESCUE_QUESTION,
    Task.UNRESCUE: UNRESCUE_QUESTION,
}
STARTED = {
    Task.START: gettext_lazy("%(name)s is starting."),
    Task.SHUTDOWN: gettext_lazy("%(name)s is shutting down."),
    Task.REBOOT: gettext_lazy("%(name)s is rebooting."),
    Task.POWER_OFF: gettext_lazy("%(name)s is being powered off."),
    Task.SUSPEND: gettext_lazy("%(name)s is being suspended."),
    Task.UNSUSPEND: gettext_lazy("%(name)s is being unsuspended."),
    Task.RESCUE: gettext_lazy("%(name)s is starting rescue mode."),
    Task.UNRESCUE: gettext_lazy("%(name)s is leaving rescue mode."),
    Task.RESET_PASSWORD: gettext_lazy("The root password of %(name)s is being reset."),
}


# The columns the list shows (panel/staff/_server_rows.html): nothing else of the servers and their
# related rows is read or turned into objects (a host's inventory, a server's keys and user data).
STAFF_SERVER_LIST_FIELDS = (
    "name", "owner_id", "status", "task", "host_id", "created_at",
    "owner__email", "host__name", "region__name", "plan__name",
)  # fmt: skip


@staff_required
def staff_servers(request: HttpRequest) -> HttpResponse:
    servers = (
        Server.objects.exclude(status=Server.Status.DELETED)
        .select_related("owner", "host", "plan", "region")
        .only(*STAFF_SERVER_LIST_FIELDS)
        .order_by("-created_at")
    )
    status = request.GET.get("status")
    if status:
        servers = servers.filter(status=status)
    query = request.GET.get("q", "").strip()
    if query:
        # The matching accounts first (a bounded list), so that Postgres combines the two trigram indexes
        # (panel migration 0012) instead of reading every server to test the owner's email.
        owners = list(
            User.objects.filter(email__icontains=query).values_list("pk", flat=True)[:SEARCH_OWNERS_MAX]
        )
        servers = servers.filter(Q(name__icontains=query) | Q(owner_id__in=owners))
    template = "panel/staff/_server_rows.html" if request.htmx else "panel/staff/servers.html"
    # A bounded count: the whole list has 100,000 servers and more; staff page through the newest.
    number = request.GET.get("page")
    page = BoundedPaginator(servers, STAFF_SERVERS_PER_PAGE, number).get_page(number)
    return render(
        request,
        template,
        {
            "servers": page.object_list,
            "page": page,
            "statuses": Server.Status.choices,
            "status": status,
            "q": query,
        },
    )


def _server(pk) -> Server:
    """Any customer's server, deleted ones too (their history stays readable)."""
    return get_object_or_404(Server.objects.select_related("owner", "host", "plan", "region", "image"), pk=pk)


def _server_context(request: HttpRequest, server: Server) -> dict:
    allowed = actions.allowed_actions(server)
    snapshots = list(Snapshot.objects.filter(server=server))
    operations = recent_operations(server, STAFF_OPERATIONS_SHOWN)
    return {
        # The operation running the server's task, for its progress (a backup's, a restore's copy).
        "current_operation": next((op for op in operations if op.status in OPEN), None)
        if server.task
        else None,
        # Every backup row of the server, those on their way out too (staff see the whole picture).
        "backups": list(
            Backup.objects.filter(server=server).select_related("target").order_by("-created_at", "-pk")
        ),
        "backup_policy": BackupPolicy.objects.filter(server=server).first(),
        "server": server,
        "allowed": allowed,
        # The staff actions card's (rescue mode and the password reset have the recovery card).
        "staff_actions": [a for a in allowed if a in STAFF_ACTIONS and a not in STAFF_RECOVERY_ACTIONS],
        "own_server": server.owner_id == request.user.pk,
        "operations": operations,
        "failure": failures.notice(server, operations, for_staff=True),
        "snapshots": snapshots,
        "snapshot_limit": settings.SNAPSHOT_LIMIT,
        "snapshots_full": len(snapshots) >= settings.SNAPSHOT_LIMIT,
        # The customer's snapshot card is shown read-only: no action is possible from this page.
        "no_actions": (),
        "confirm_questions": {
            str(action): question % {"name": server.name} for action, question in CONFIRM_QUESTIONS.items()
        },
        "suspend_reason_max_length": SUSPEND_REASON_MAX_LENGTH,
        "rescue_available": server.status in ACTIONS[Task.RESCUE].allowed_from
        and images.rescue_image() is not None,
        # Admins move a server to another host of its region (not while an action runs).
        "migrate_form": MigrateForm(server)
        if request.user.is_panel_admin and Task.MIGRATE in allowed
        else None,
    }


@staff_required
def staff_server(request: HttpRequest, pk) -> HttpResponse:
    """A customer's server as staff see it; htmx polls its state part while an action is in flight."""
    server = _server(pk)
    template = "panel/staff/_server_state.html" if request.htmx else "panel/staff/server_detail.html"
    context = _server_context(request, server)
    if not request.htmx:  # a rescue's or password reset's one-time password, once
        context["one_time_password"] = passwords.take_for_page(request, server.pk)
    return render(request, template, context)


@sensitive_post_parameters("password")  # a root password chosen for a reset stays out of error reports
@staff_required
@require_POST
def staff_server_action(request: HttpRequest, pk) -> HttpResponse:
    """Start a staff action on the server; refusals (ActionError) come back as messages."""
    server = _server(pk)
    action = request.POST.get("action", "")
    reason = request.POST.get("reason", "").strip()
    if action not in STAFF_ACTIONS:
        messages.error(request, _("Unknown action."))
        return redirect("staff-server", pk=server.pk)
    if action == Task.SUSPEND and not reason:
        messages.error(request, _("Give a reason for the suspension; it is kept for staff."))
        return redirect("staff-server", pk=server.pk)
    if len(reason) > SUSPEND_REASON_MAX_LENGTH:
        messages.error(
            request,
            _("The reason is too long: at most %(count)s characters.") % {"count": SUSPEND_REASON_MAX_LENGTH},
        )
        return redirect("staff-server", pk=server.pk)
    if action in CONFIRM_QUESTIONS and not confirmation.is_confirmed(request):
        # Not asked in the browser (no JavaScript: panel.js fills in `confirmed`): ask on a page first.
        question = CONFIRM_QUESTIONS[action] % {"name": server.name}
        if reason:
            question = f"{question} {_('Reason: %(reason)s') % {'reason': reason}}"
        return confirmation.ask(
            request,
            title=f"{Task(action).label} · {server.name}",
            question=question,
            confirm_label=str(Task(action).label),
            cancel_url=reverse("staff-server", args=[server.pk]),
        )
    try:
        if action == Task.SUSPEND:
            actions.suspend_server(server, reason, request.user)
        elif action == Task.UNSUSPEND:
            actions.unsuspend_server(server, request.user)
        else:
            params = {"password": request.POST.get("password", "")} if action == Task.RESET_PASSWORD else {}
            operation = actions.perform(server, action, request.user, params)
            if action in actions.PASSWORD_ACTIONS:
                passwords.keep_for_next_page(request, server.pk, action, operation.one_time_password)
    except actions.ActionError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, STARTED[action] % {"name": server.name})
    return redirect("staff-server", pk=server.pk)


@admin_required
@require_POST
def staff_server_migrate(request: HttpRequest, pk) -> HttpResponse:
    """Move the server to another host of its region (admins only): form errors are shown on the page, a
    refusal (another action runs, no room, the host is down...) comes back as a message."""
    server = _server(pk)
    form = MigrateForm(server, request.POST)
    if not form.is_valid():
        messages.error(request, _("The server was not moved: please correct the errors below."))
        context = {**_server_context(request, server), "migrate_form": form}
        return render(request, "panel/staff/server_detail.html", context)
    try:
        operation = migration.migrate_server(
            server,
            request.user,
            host=form.target(),
            max_bandwidth_mib=form.cleaned_data["max_bandwidth_mib"],
            timeout_seconds=form.cleaned_data["timeout_seconds"],
        )
    except actions.ActionError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            _("%(name)s is moving to %(host)s.") % {"name": server.name, "host": operation.params["target"]},
        )
    return redirect("staff-server", pk=server.pk)
