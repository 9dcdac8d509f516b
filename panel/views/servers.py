"""Customer pages for servers: list, order, detail with live status, actions."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from billing.money import currency
from hypervisor import ipam
from hypervisor.models import IPAddress

from .. import actions, catalog
from ..forms import OrderForm, PtrForm
from ..models import Operation, Server
from ..models.servers import attach_addresses


def own_servers(request):
    return Server.objects.filter(owner=request.user).select_related("plan", "image", "region")


def _live_servers(request):
    return own_servers(request).exclude(status=Server.Status.DELETED)


@login_required
def server_list(request):
    servers = attach_addresses(_live_servers(request))
    template = "panel/servers/_rows.html" if request.htmx else "panel/servers/list.html"
    return render(request, template, {"servers": servers})


@login_required
def server_order(request):
    form = OrderForm(request.POST or None, user=request.user, initial={"region": request.GET.get("region")})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            server = actions.order_server(
                request.user,
                name=data["name"],
                plan=data["plan"],
                image=data["image"],
                region=data["region"],
                ssh_keys=data["ssh_keys"],
                user_data=data["user_data"],
            )
        except actions.ActionError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, _("Your server %(name)s is being created.") % {"name": server.name})
            return redirect("server-detail", pk=server.pk)
    # Which plans each open region can take now, for the plan cards to follow the region select.
    regions = list(catalog.open_regions())
    availability = {str(region.pk): sorted(catalog.available_plans(region)) for region in regions}
    region = str(form["region"].value() or "")
    if region not in availability:  # nothing or something odd chosen: the select shows the first region
        region = next(iter(availability), "")
    return render(
        request,
        "panel/servers/order.html",
        {
            "form": form,
            "available_plans": set(availability.get(region, [])),
            "plan_availability": availability,
            "currency": currency(),
            "plans": form.fields["plan"].queryset,
        },
    )


def _detail_context(request, server: Server) -> dict:
    return {
        "server": server,
        "allowed": actions.allowed_actions(server),
        "operations": Operation.objects.filter(server=server).select_related("requested_by")[:20],
    }


@login_required
def server_detail(request, pk):
    server = get_object_or_404(own_servers(request), pk=pk)
    return render(request, "panel/servers/detail.html", _detail_context(request, server))


@login_required
def server_status(request, pk):
    """The live part of the server page, polled by htmx."""
    server = get_object_or_404(own_servers(request), pk=pk)
    return render(request, "panel/servers/_status.html", _detail_context(request, server))


@login_required
@require_POST
def server_action(request, pk):
    server = get_object_or_404(own_servers(request), pk=pk)
    action = request.POST.get("action", "")
    try:
        if action == Operation.Type.DELETE:
            if request.POST.get("confirm") != server.name:
                messages.error(request, _("Type the server's hostname to confirm deletion."))
                return redirect("server-detail", pk=server.pk)
            actions.delete_server(server, request.user)
            messages.success(request, _("%(name)s is being deleted.") % {"name": server.name})
            return redirect("server-list")
        if action not in actions.CUSTOMER_ACTIONS:
            messages.error(request, _("Unknown action."))
        else:
            actions.request_action(server, action, request.user)
    except actions.ActionError as exc:
        messages.error(request, exc.message)
    if request.htmx:
        server.refresh_from_db()
        return render(request, "panel/servers/_status.html", _detail_context(request, server))
    return redirect("server-detail", pk=server.pk)


@login_required
@require_POST
def server_ptr(request, pk):
    """The customer sets or clears the reverse DNS (PTR) name of one of their server's addresses."""
    server = get_object_or_404(own_servers(request), pk=pk)
    form = PtrForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return redirect("server-detail", pk=server.pk)
    address, ptr = form.cleaned_data["address"], form.cleaned_data["ptr"]
    try:
        ipam.set_ptr(server.id, address, ptr)
    except IPAddress.DoesNotExist:
        raise Http404(_("This server has no such address.")) from None
    if ptr:
        messages.success(
            request,
            _("The reverse DNS name of %(address)s is now %(ptr)s.") % {"address": address, "ptr": ptr},
        )
    else:
        messages.success(
            request, _("The reverse DNS name of %(address)s was cleared.") % {"address": address}
        )
    return redirect("server-detail", pk=server.pk)
