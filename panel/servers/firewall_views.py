"""The server page's Firewall tab (customers), and staff's reset of a server's firewall (posted from the
firewall's card on the staff server page, templates/panel/staff/_firewall.html)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from panel import confirmation
from panel.models import Server
from panel.roles import staff_required
from panel.servers import firewall as firewalls
from panel.servers.actions import ActionError
from panel.servers.firewall_forms import PREFIX, PolicyForm, RuleFormSet, initial_rows, with_more_rows
from panel.servers.queries import own_servers
from panel.servers.states import Status, Task


def _editable(server: Server) -> bool:
    return server.status not in firewalls.GONE and server.task != Task.DELETE


def _show_errors(error: ValidationError, formset, policy_form) -> list[str]:
    """Put the service's errors (keyed `inbound.<n>.<field>`, `inbound`, `default_inbound`) on the rows and
    fields they are about; returns those that belong to no field."""
    rows = formset.rule_forms()
    rest: list[str] = []
    for key, errors in error.message_dict.items():
        parts = key.split(".")
        if key == "default_inbound":
            policy_form.add_error("default_inbound", errors)
        elif len(parts) == 3 and parts[1].isdigit() and int(parts[1]) < len(rows):
            form, field = rows[int(parts[1])], parts[2]
            form.add_error(field if field in form.fields else None, errors)
        else:
            rest.extend(errors)
    return rest


@login_required
def server_firewall(request: HttpRequest, pk) -> HttpResponse:
    server = get_object_or_404(own_servers(request), pk=pk)
    firewall = firewalls.firewall_of(server)
    editable = _editable(server)
    page_errors: list[str] = []
    if request.method == "POST" and editable:
        if "more_rows" in request.POST:  # more empty rows; nothing is saved
            formset = RuleFormSet(with_more_rows(request.POST), prefix=PREFIX)
            policy_form = PolicyForm(request.POST)
        else:
            formset = RuleFormSet(request.POST, prefix=PREFIX)
            policy_form = PolicyForm(request.POST)
            if formset.is_valid() and policy_form.is_valid():
                try:
                    firewalls.set_firewall(
                        server, formset.rules(), policy_form.cleaned_data["default_inbound"], request.user
                    )
                except ValidationError as exc:
                    page_errors = _show_errors(exc, formset, policy_form)
                except ActionError as exc:
                    page_errors = [exc.message]
                else:
                    messages.success(request, _("Firewall saved. The server gets it within a minute."))
                    return redirect("server-firewall", pk=server.pk)
            page_errors += list(formset.non_form_errors())
    else:
        formset = RuleFormSet(initial=initial_rows(firewall), prefix=PREFIX)
        policy_form = PolicyForm(initial={"default_inbound": firewall.default_inbound})
    return render(
        request,
        "panel/servers/firewall.html",
        {
            "server": server,
            "firewall": firewall,
            "formset": formset,
            "policy_form": policy_form,
            "editable": editable,
            "page_errors": page_errors,
            "max_rules": firewalls.MAX_RULES,
            "deleted": server.status == Status.DELETED,
        },
    )


@staff_required
@require_POST
def staff_firewall_reset(request: HttpRequest, pk) -> HttpResponse:
    """Staff: the server's firewall back to no rules, everything accepted (asked first without JavaScript)."""
    server = get_object_or_404(Server.objects.select_related("owner"), pk=pk)
    if not confirmation.is_confirmed(request):
        return confirmation.ask(
            request,
            title=_("Reset the firewall · %(name)s") % {"name": server.name},
            question=_(
                "Reset the firewall of %(name)s? Its rules are removed and all inbound traffic is accepted."
            )
            % {"name": server.name},
            confirm_label=_("Reset the firewall"),
            cancel_url=reverse("staff-server", args=[server.pk]),
        )
    try:
        firewalls.reset_firewall(server, request.user)
    except ActionError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            _("The firewall of %(name)s was reset: no rules, everything accepted.") % {"name": server.name},
        )
    return redirect("staff-server", pk=server.pk)
