"""Usage pages: a server's charts (for its owner), a host's charts (for staff), and staff adding a traffic
block."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import formats, timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from hypervisor.models import Host
from panel.models import Server
from panel.roles import staff_required
from panel.servers.queries import own_servers
from panel.usage import display, metering
from panel.usage.forms import TrafficBlockForm


@login_required
def server_usage(request, pk):
    """The charts fragment of the server page (htmx swaps it when a time range is chosen)."""
    server = get_object_or_404(own_servers(request), pk=pk)
    return render(
        request, "panel/usage/_charts.html", display.server_charts(server, request.GET.get("window"))
    )


@staff_required
def host_usage(request, pk: int):
    """The charts fragment of the host page: the sum over the host's servers."""
    host = get_object_or_404(Host, pk=pk)
    return render(request, "panel/usage/_charts.html", display.host_charts(host, request.GET.get("window")))


@staff_required
@require_POST
def add_traffic_block(request, pk):
    """Staff add transfer to a server's current period; a throttle or suspension lifts if it now fits."""
    server = get_object_or_404(
        Server.objects.exclude(status=Server.Status.DELETED).select_related("plan", "owner", "host"), pk=pk
    )
    form = TrafficBlockForm(request.POST)
    if server.owner_id == request.user.pk:
        messages.error(request, _("You cannot add transfer to your own server; ask another staff member."))
    elif form.is_valid():
        gib = form.cleaned_data["gib"]
        period = metering.add_traffic_block(server, gib, by=request.user)
        messages.success(
            request,
            _("Added %(gib)s GiB of transfer to %(name)s for the period until %(end)s.")
            % {
                "gib": gib,
                "name": server.name,
                "end": formats.date_format(timezone.localtime(period.end), "DATETIME_FORMAT"),
            },
        )
    else:
        for error in form.errors.get("gib", []):
            messages.error(request, _("No traffic was added: %(error)s") % {"error": error})
    target = request.POST.get("next", "")
    safe = {"allowed_hosts": {request.get_host()}, "require_https": request.is_secure()}
    if url_has_allowed_host_and_scheme(target, **safe):
        return redirect(target)
    return redirect("staff-customer", pk=server.owner_id)
