"""The host page's drain and evacuation (admins), and the fragment that shows a move's progress (staff),
polled while the move runs."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from hypervisor.models import Host
from panel import confirmation
from panel.infrastructure import host_moves
from panel.infrastructure.host_move_forms import HostDrainForm
from panel.roles import admin_required, staff_required
from panel.servers.actions import ActionError

# The questions asked before a drain or an evacuation starts: in the browser (the move card's data-confirm)
# and on the confirmation page without JavaScript. One text each.
DRAIN_QUESTION = gettext_lazy(
    "Drain %(host)s? Every server on it is migrated to other hosts of its region, a few at a time "
    "(running servers live), and the host stays in maintenance."
)
EVACUATE_QUESTION = gettext_lazy(
    "Evacuate %(host)s? Do this only when the host is gone for good: every server on it is rebuilt on "
    "another host from its latest backup, or reinstalled from its image when it has none (its data are "
    "lost), and its owner is told. Should the host come back, its old copies must not be started."
)


def move_context(host: Host, drain_form: HostDrainForm | None = None) -> dict:
    """What the host page's move card shows: the running or latest move, the drain form, and the questions
    asked before a drain or an evacuation."""
    return {
        "move": host_moves.latest_move(host),
        "drain_form": drain_form or HostDrainForm(),
        "drain_question": drain_question(host),
        "evacuate_question": evacuate_question(host),
    }


@staff_required
@require_GET
def host_move(request: HttpRequest, pk: int) -> HttpResponse:
    """The move card alone (polled by the host page while the move runs)."""
    host = get_object_or_404(Host, pk=pk)
    return render(request, "panel/hosts/_move.html", {"host": host, **move_context(host)})


def drain_question(host: Host) -> str:
    return str(DRAIN_QUESTION) % {"host": host.name}


def evacuate_question(host: Host) -> str:
    return str(EVACUATE_QUESTION) % {"host": host.name}


@admin_required
@require_POST
def host_drain(request: HttpRequest, pk: int) -> HttpResponse:
    host = get_object_or_404(Host, pk=pk)
    form = HostDrainForm(request.POST)
    if not form.is_valid():
        errors = "; ".join(
            f"{form.fields[name].label}: {' '.join(texts)}" for name, texts in form.errors.items()
        )
        messages.error(request, _("The drain was not started: %(errors)s") % {"errors": errors})
        return redirect("host-detail", pk=host.pk)
    if not confirmation.is_confirmed(request):
        return confirmation.ask(
            request,
            title=_("Drain · %(host)s") % {"host": host.name},
            question=drain_question(host),
            confirm_label=_("Drain host"),
            cancel_url=reverse("host-detail", args=[host.pk]),
        )
    try:
        host_moves.start_drain(host, request.user, **form.limits())
    except ActionError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            _(
                "%(host)s is being drained: its servers move away a few at a time. This page shows how far "
                "it is."
            )
            % {"host": host.name},
        )
    return redirect("host-detail", pk=host.pk)


@admin_required
@require_POST
def host_evacuate(request: HttpRequest, pk: int) -> HttpResponse:
    host = get_object_or_404(Host, pk=pk)
    if not confirmation.is_confirmed(request):
        return confirmation.ask(
            request,
            title=_("Evacuate · %(host)s") % {"host": host.name},
            question=evacuate_question(host),
            confirm_label=_("Evacuate host"),
            cancel_url=reverse("host-detail", args=[host.pk]),
        )
    try:
        host_moves.start_evacuation(host, request.user)
    except ActionError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            _(
                "%(host)s is being evacuated: its servers are rebuilt on other hosts. This page shows how "
                "far it is."
            )
            % {"host": host.name},
        )
    return redirect("host-detail", pk=host.pk)
