"""The staff list of every customer's servers."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db.models import Q
from django.shortcuts import render

from panel.models import Server
from panel.roles import staff_required
from panel.servers.queries import attach_addresses

STAFF_SERVERS_PER_PAGE = 50


@staff_required
def staff_servers(request):
    servers = (
        Server.objects.exclude(status=Server.Status.DELETED)
        .select_related("owner", "host", "plan", "region", "image")
        .order_by("-created_at")
    )
    status = request.GET.get("status")
    if status:
        servers = servers.filter(status=status)
    query = request.GET.get("q", "").strip()
    if query:
        servers = servers.filter(Q(name__icontains=query) | Q(owner__email__icontains=query))
    template = "panel/staff/_server_rows.html" if request.htmx else "panel/staff/servers.html"
    page = Paginator(servers, STAFF_SERVERS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        template,
        {
            "servers": attach_addresses(page.object_list),
            "page": page,
            "statuses": Server.Status.choices,
            "status": status,
            "q": query,
        },
    )
